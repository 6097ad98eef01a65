"""Fallback from the local model to a remote LLM: the remote tier, policy, circuit breaker, decision log, config.

    import edgekit
    from edgekit.router import Policy, RemoteLLM, Router

    router = Router(edgekit.load("out/smollm2-int8"), RemoteLLM("http://127.0.0.1:8080/v1", "big-model"),
                    Policy(threshold=0.3, first_k=8))
    result = router.chat([{"role": "user", "content": "What is 17 times 23?"}])
    print(result.text, result.decision.line())

Nothing here imports torch, transformers or optimum.
"""

from edgekit.router.breaker import CircuitBreaker
from edgekit.router.config import EdgekitConfig, load_config, update_config
from edgekit.router.decision import Decision, RoutedResult, RoutedStream
from edgekit.router.log import DecisionLog
from edgekit.router.policy import TRIGGERS, Policy
from edgekit.router.remote import RemoteLLM
from edgekit.router.router import Router

__all__ = [
    "Router", "RemoteLLM", "Policy", "CircuitBreaker", "Decision", "RoutedResult", "RoutedStream", "DecisionLog",
    "EdgekitConfig", "load_config", "update_config", "TRIGGERS",
]
