"""The size report: model bytes, package bytes, and the estimated size of a reduced-operator ONNX Runtime.

ONNX Runtime can be built with only the operator kernels one model needs
(``--include_ops_by_config required_operators.config``) and only ORT-format model
loading (``--minimal_build``). We cannot run that build here (it needs the Android NDK
or Xcode and about an hour), so the package estimates its size from figures ONNX
Runtime publishes for its own minimal builds, all Android arm64-v8a ``libonnxruntime.so``
in MinSizeRel with ``--disable_ml_ops --disable_exceptions``:

* the no-operator baseline: ONNX Runtime's Android CI fails a change whose minimal
  build without any kernels grows past 1,595,392 bytes (:data:`FIGURES`, "baseline");
* the cost of a kernel: the same CI measured the baseline (1,306,224 bytes) and a build
  with the 111 operators of the pre-built ORT Mobile package, types reduced to float,
  int8 and uint8 (2,658,304 bytes), in one change; (2,658,304 - 1,306,224) / 111 = 12.2 KB
  per operator, on average;
* for comparison, the libraries ONNX Runtime 1.13.1 shipped for Android arm64: the full
  ``onnxruntime-android`` (12.2 MB) and the reduced-operator ``onnxruntime-mobile`` (3.2 MB),
  from the mobile tutorial of its documentation (removed in 2024 with the mobile packages).

So a model's runtime is estimated at baseline + operators x 12.2 KB. Kernels differ in
size (MatMulNBits' 4-bit GEMMs are larger than Relu), so this is an estimate; an
``--minimal_build extended`` runtime (what NNAPI, CoreML and XNNPACK need) is larger.
The ORT docs say the Android sizes are good estimates for iOS as well.
"""

from __future__ import annotations

from dataclasses import dataclass

# Sources, with what each figure is (bytes, Android arm64-v8a libonnxruntime.so).
CI_NOW = "https://github.com/microsoft/onnxruntime/blob/main/.github/workflows/android.yml"
CI_2022 = "https://github.com/microsoft/onnxruntime/pull/13208"
DOCS_1_13 = "https://onnxruntime.ai/docs/tutorials/mobile/ (ONNX Runtime 1.13.1 library sizes; removed by " \
            "https://github.com/microsoft/onnxruntime/pull/21605)"


@dataclass(frozen=True)
class Figure:
    name: str
    bytes: int
    what: str
    source: str


FIGURES = {
    "baseline": Figure("baseline", 1_595_392, "minimal build with no operator kernels (CI size limit, "
                       "AndroidBinarySizeCheckJob_MinimalBaseline)", CI_NOW),
    "baseline_2022": Figure("baseline_2022", 1_306_224, "the same limit when the next figure was measured", CI_2022),
    "mobile_ops_2022": Figure("mobile_ops_2022", 2_658_304, "minimal build with the 111 operators of the ORT Mobile "
                              "package (mobile_package.required_operators.config), types float/int8/uint8", CI_2022),
    "full_android_1_13": Figure("full_android_1_13", 12_200_000,
                                "onnxruntime-android 1.13.1, all operators (published as 12.2 MB)", DOCS_1_13),
    "mobile_android_1_13": Figure("mobile_android_1_13", 3_200_000, "onnxruntime-mobile 1.13.1, reduced operators "
                                  "(minimal build; published as 3.2 MB)", DOCS_1_13),
}
MOBILE_PACKAGE_OPS = 111  # distinct domain:op kernels in ONNX Runtime's mobile_package.required_operators.config
PER_OPERATOR_BYTES = (FIGURES["mobile_ops_2022"].bytes - FIGURES["baseline_2022"].bytes) // MOBILE_PACKAGE_OPS


def estimate_runtime_bytes(n_operators: int) -> int:
    """Estimated size of a minimal, reduced-operator ONNX Runtime with ``n_operators`` kernels (see module doc)."""
    return FIGURES["baseline"].bytes + n_operators * PER_OPERATOR_BYTES


def runtime_estimate(n_operators: int) -> dict:
    """The size report's runtime section: the estimate, how it was computed, and the figures behind it."""
    return {
        "estimated_bytes": estimate_runtime_bytes(n_operators),
        "operators": n_operators,
        "method": f"baseline {FIGURES['baseline'].bytes:,} B + {n_operators} operators x {PER_OPERATOR_BYTES:,} B "
                  f"(average kernel size of ONNX Runtime's measured minimal builds)",
        "abi": "android arm64-v8a, MinSizeRel, --minimal_build --disable_ml_ops --disable_exceptions "
               "(iOS sizes are similar, per ONNX Runtime's docs)",
        "figures": [vars(f) for f in FIGURES.values()],
    }
