"""``edgekit inspect``: show an artifact's manifest and verify its files."""

from __future__ import annotations

from pathlib import Path

import typer

from edgekit.cli import app
from edgekit.cli.options import json_option
from edgekit.cli.output import manifest_tables, out, print_json, print_table


@app.command("inspect")
def inspect_cmd(
    artifact: Path = typer.Argument(..., help="An artifact folder made by 'edgekit export', or a package made by "
                                    "'edgekit package'.", show_default=False),
    as_json: bool = json_option("Print the manifest as JSON."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check every file's size and sha256 against the manifest."),
):
    """Show the manifest (source, precision, gate metrics, files, versions) and verify the file hashes.

    Exits 2 when a file is missing or does not match its recorded sha256.
    """
    from edgekit.manifest import MANIFEST_NAME, read_manifest, verify_files
    from edgekit.package.schema import is_package

    if is_package(artifact) and not (artifact / MANIFEST_NAME).is_file():  # a package made by 'edgekit package'
        from edgekit.cli.package import show_package

        show_package(artifact, as_json=as_json, verify=verify)
        return
    manifest = read_manifest(artifact)
    if verify:
        verify_files(artifact, manifest, hashes=True, use_stamps=False)
    if as_json:
        print_json({"path": str(artifact), "verified": verify, "manifest": manifest.model_dump(mode="json")})
        return
    print_table(*manifest_tables(manifest, str(artifact)))
    if verify:
        out.print(f"[green]verified[/]: all {len(manifest.files)} files match their sha256")
