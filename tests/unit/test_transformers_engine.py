"""The transformers engine on tiny random models: LeanCopilot's beam scores, the forced prefix, sampling on a
decoder-only model, 413 beyond the input limit, and cancellation that frees the worker."""

import asyncio
import math

import pytest
import torch

from core.config import BundleConfig
from core.engine_protocol import PrefixForcingEngine
from core.errors import InputTooLargeError
from core.payloads import SamplingRequest
from models.transformers_engine import TransformersEngine, cut_at_stop, sequence_probability

STATE = "n : ℕ\n⊢ gcd n n = n"


def beam(n: int, max_tokens: int = 24) -> SamplingRequest:
    return SamplingRequest(n=n, temperature=1.0, top_p=1.0, max_tokens=max_tokens, stop=())


def started(model, **settings) -> TransformersEngine:
    bundle = BundleConfig(name="m", model=str(model), engine="transformers", transformers={"device": "cpu", **settings})
    engine = TransformersEngine(bundle)
    asyncio.run(engine.start())
    return engine


@pytest.fixture(scope="module")
def byt5_engine(tiny_byt5):
    engine = started(tiny_byt5)
    yield engine
    engine.shutdown()


def leancopilot_beam_scores(engine, state: str, n: int, max_tokens: int, prefix: str = "") -> list[float]:
    """LeanCopilot's EncoderDecoderTransformer: beams = n, length_penalty 0, score = sequences_scores.exp()."""
    tokens = engine.tokenizer(state, return_tensors="pt")
    forced = [engine.model.config.decoder_start_token_id] + engine.tokenizer(prefix, add_special_tokens=False).input_ids
    out = engine.model.generate(
        tokens.input_ids, decoder_input_ids=torch.tensor([forced]), max_new_tokens=max_tokens, num_beams=n,
        length_penalty=0.0, do_sample=False, num_return_sequences=n, early_stopping=False,
        return_dict_in_generate=True, output_scores=True,
    )
    return out.sequences_scores.exp().tolist()


def test_byt5_beam_search_scores_are_leancopilots_exp_sequence_logprob(byt5_engine):
    assert byt5_engine.is_encoder_decoder and byt5_engine.decoding == "beam_search"
    output = asyncio.run(byt5_engine.generate(STATE, beam(6), "r1"))
    assert len(output.completions) == 6
    expected = leancopilot_beam_scores(byt5_engine, STATE, 6, 24)
    assert [c.score for c in output.completions] == pytest.approx(expected, rel=1e-4)
    for completion in output.completions:
        # exp(sum), not exp(mean): the raw sequence log-prob, whatever the beam's length penalty.
        assert completion.score == pytest.approx(math.exp(completion.cumulative_logprob), rel=1e-6)
        assert 0.0 <= completion.score <= 1.0
    assert output.prompt_tokens == len(STATE.encode()) + 1  # bytes + EOS


def test_byt5_prefix_is_forced_on_the_decoder(byt5_engine):
    assert isinstance(byt5_engine, PrefixForcingEngine)
    output = asyncio.run(byt5_engine.generate_with_prefix(STATE, "rw [", beam(4), "r2"))
    expected = leancopilot_beam_scores(byt5_engine, STATE, 4, 24, prefix="rw [")
    # The texts are what follows the prefix; the scores are those of the continuation given the prefix.
    assert [c.score for c in output.completions] == pytest.approx(expected, rel=1e-4)
    free = asyncio.run(byt5_engine.generate(STATE, beam(4), "r3"))
    assert [c.score for c in output.completions] != pytest.approx([c.score for c in free.completions])


def test_beam_width_may_exceed_n(tiny_byt5):
    engine = started(tiny_byt5, num_beams=8)
    try:
        output = asyncio.run(engine.generate(STATE, beam(2), "r4"))
        assert len(output.completions) == 2
    finally:
        engine.shutdown()


def test_inputs_beyond_the_limit_are_413(tiny_byt5):
    engine = started(tiny_byt5, max_input_tokens=8)
    try:
        with pytest.raises(InputTooLargeError):
            asyncio.run(engine.generate(STATE, beam(2), "r5"))
    finally:
        engine.shutdown()


def test_decoder_only_models_sample_n_and_score_like_vllm(tiny_llama):
    engine = started(tiny_llama)
    try:
        assert not engine.is_encoder_decoder and engine.decoding == "sampling"
        sampling = SamplingRequest(n=3, temperature=1.0, top_p=0.95, max_tokens=6, stop=())
        output = asyncio.run(engine.generate_with_prefix(STATE + ":::", "simp", sampling, "r6"))
        assert len(output.completions) == 3
        for completion in output.completions:
            # No EOS in this tiny model: every candidate runs to max_tokens; the score is left to the ingress.
            assert completion.num_tokens == 6 and completion.finish_reason == "length"
            assert completion.score is None and completion.cumulative_logprob < 0
        # Stop strings end a candidate early; the text never holds one.
        stopping = SamplingRequest(n=4, temperature=1.0, top_p=1.0, max_tokens=40, stop=("a", "e", "\n"))
        for completion in asyncio.run(engine.generate(STATE, stopping, "r7")).completions:
            assert not set(completion.text) & {"a", "e", "\n"}
            assert completion.finish_reason == "stop" or completion.num_tokens == 40
    finally:
        engine.shutdown()


def test_a_cancelled_request_stops_and_frees_the_worker(tiny_llama):
    engine = started(tiny_llama)

    async def scenario():
        # Without cancellation this would decode 8000 tokens for 64 sequences: minutes on a CPU.
        long = asyncio.create_task(engine.generate(STATE, SamplingRequest(64, 1.0, 1.0, 8000, ()), "long"))
        await asyncio.sleep(1.0)
        assert await engine.num_unfinished_requests() == 1
        long.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long
        assert await engine.num_unfinished_requests() == 0
        # The single worker is free again only once the cancelled generate has stopped.
        short = await asyncio.wait_for(engine.generate(STATE, SamplingRequest(1, 1.0, 1.0, 2, ()), "short"), 60)
        return short

    try:
        assert len(asyncio.run(scenario()).completions) == 1
    finally:
        engine.shutdown()


def test_pure_helpers():
    assert sequence_probability([-0.5, -0.25]) == pytest.approx(math.exp(-0.75))
    assert sequence_probability([float("nan")]) == 0.0
    assert sequence_probability([]) == 1.0
    assert cut_at_stop("simp\nring", ("\n",)) == ("simp", True)
    assert cut_at_stop("simp", ("\n", "")) == ("simp", False)
