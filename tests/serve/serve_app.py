"""The test application: a tiny random Llama on vLLM and a tiny encoder-only bundle."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from core.config import AppArgs

APP_NAME = "leanserve"
GENERATOR = "tiny"
GENERATOR_ALIAS = "tiny-alias"
ENCODER_ONLY = "tiny-retriever"
REQUEST_TIMEOUT_S = 15.0
ENCODER_DIM = 32


@dataclass
class ServeApp:
    url: str
    args: AppArgs

    def bundle_handle(self, name: str):
        from ray import serve

        bundle = next(b for b in self.args.models if b.name == name)
        return serve.get_deployment_handle(bundle.deployment_name, app_name=APP_NAME)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_test_app_args(tiny_llama, tiny_encoder) -> AppArgs:
    return AppArgs.model_validate(
        {
            "ingress": {"num_cpus": 0.1, "request_timeout_s": REQUEST_TIMEOUT_S},
            # No n x max_tokens budget: the timeout and disconnect tests ask for long work on purpose.
            "limits": {"max_tokens": 8192, "max_n": 32, "per_class": {"interactive": {"max_generated_tokens": 0}}},
            "models": [
                {
                    "name": GENERATOR,
                    "aliases": [GENERATOR_ALIAS],
                    "model": str(tiny_llama),
                    "prompt": {"template": "{state}:::"},
                    # No stop string: a random model then samples max_tokens every time, so a long request
                    # (for the timeout and disconnect tests) is long on purpose.
                    "sampling": {"n": 4, "temperature": 1.0, "max_tokens": 12, "stop": []},
                    "engine_args": {
                        "dtype": "float32",
                        "max_model_len": 8192,
                        "kv_cache_memory_bytes": 256 << 20,
                        "max_num_seqs": 64,
                        "enforce_eager": True,
                    },
                    "deployment": {"num_cpus": 0.5},
                },
                {"name": ENCODER_ONLY, "encoder": {"model": str(tiny_encoder)}, "deployment": {"num_cpus": 0.1}},
            ],
        }
    )
