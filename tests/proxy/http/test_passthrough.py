"""Non-chat OpenAI endpoints through the proxy, with the OpenAI SDK, to a scripted upstream."""

from __future__ import annotations

import aiohttp
import openai
import orjson
import pytest

from proxy.http.app import create_app
from tests.proxy.fake_upstream import PRIMARY_MODEL, Hang, Reply, Stream, proxy_stack
from tests.proxy.http.test_app import make_config
from tests.servers import running


async def test_embeddings_through_the_sdk_reach_the_upstream_unchanged() -> None:
    async with proxy_stack() as stack:
        raw = await stack.client.embeddings.with_raw_response.create(
            model=PRIMARY_MODEL, input=["one two", "three"], extra_headers={"x-request-id": "e-1"}
        )
        result = raw.parse()
        assert [list(d.embedding) for d in result.data] == [[0.0, 7.0, 0.5], [1.0, 5.0, 0.5]]
        assert result.usage.prompt_tokens == 3
        assert raw.headers["x-request-id"] == "e-1"
        (sent,) = stack.primary.raw
        assert sent.path_qs == "/v1/embeddings"
        assert orjson.loads(sent.body) == {
            "model": PRIMARY_MODEL,
            "input": ["one two", "three"],
            "encoding_format": "base64",  # the SDK's own choice, forwarded as it was
        }
        assert "Authorization" not in sent.headers  # the client's key stays with the proxy
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{stack.base_url}/metrics") as resp:
                metrics = await resp.text()
        assert (
            'adaptive_passthrough_requests_total{endpoint="embeddings",status="200",'
            'upstream="primary"} 1.0' in metrics
        )
        assert 'adaptive_tokens_total{kind="prompt",upstream="primary"} 3.0' in metrics


async def test_upstream_name_is_rewritten_and_unknown_models_go_to_the_default() -> None:
    async with proxy_stack() as stack:
        await stack.client.embeddings.create(model="backup", input="x", encoding_format="float")
        await stack.client.moderations.create(model="omni-moderation-latest", input="x")
        (by_name,) = stack.backup.raw
        assert orjson.loads(by_name.body)["model"] == "fake-backup-model"
        (default,) = stack.primary.raw
        assert default.path_qs == "/v1/moderations"
        assert orjson.loads(default.body)["model"] == "omni-moderation-latest"


async def test_errors_and_retries_are_those_of_chat() -> None:
    async with proxy_stack() as stack:
        stack.primary.script(Reply(status=503), Reply(status=503))  # primary retries twice
        ok = await stack.client.embeddings.create(
            model=PRIMARY_MODEL, input="x", encoding_format="float"
        )
        assert ok.data and len(stack.primary.raw) == 3
        stack.primary.script(
            Reply(status=400, body={"error": {"message": "bad input", "param": "input"}})
        )
        with pytest.raises(openai.BadRequestError) as bad:
            await stack.client.embeddings.create(model=PRIMARY_MODEL, input="x")
        assert bad.value.param == "input"
        stack.backup.script(Reply(status=401, body={"error": {"message": "key sk-secret"}}))
        with pytest.raises(openai.InternalServerError) as rejected:
            await stack.client.embeddings.create(model="backup", input="x")
        assert rejected.value.status_code == 502
        assert "sk-secret" not in str(rejected.value.body)


async def test_an_upstream_timeout_is_the_504_of_chat_before_and_after_the_first_byte() -> None:
    # ``slow`` (timeout_s 0.3) is served by the primary fake; retries 0.
    async with proxy_stack() as stack:
        stack.primary.script(Hang())
        with pytest.raises(openai.APIStatusError) as chat:
            await stack.client.chat.completions.create(
                model="slow", messages=[{"role": "user", "content": "hi"}]
            )
        stack.primary.script(Hang())
        with pytest.raises(openai.APIStatusError) as before_headers:
            await stack.client.embeddings.create(model="slow", input="x", encoding_format="float")
        # The status line and headers arrive, then the JSON body stalls (was a 500 "internal").
        stalled = Stream((b'{"data": [',), end="hang", content_type="application/json")
        stack.primary.script(stalled)
        with pytest.raises(openai.APIStatusError) as mid_body:
            await stack.client.embeddings.create(model="slow", input="x", encoding_format="float")
        assert len(stack.primary.raw) == 2 and len(stack.primary.requests) == 1
    for error in (chat.value, before_headers.value, mid_body.value):
        assert error.status_code == 504
        assert (error.type, error.code) == ("timeout_error", "upstream_timeout")
        assert isinstance(error.body, dict)
        assert error.body["message"] == "upstream 'slow' did not answer within 0.3 s"


async def test_multipart_audio_streams_and_binary_answers_pass_through() -> None:
    async with proxy_stack() as stack:
        audio = b"RIFF" + bytes(range(256)) * 40
        transcript = await stack.client.audio.transcriptions.create(
            model=PRIMARY_MODEL, file=("clip.wav", audio, "audio/wav")
        )
        (upload,) = stack.primary.raw
        assert upload.path_qs == "/v1/audio/transcriptions"
        assert upload.headers["Content-Type"].startswith("multipart/form-data; boundary=")
        assert audio in upload.body and transcript.text == f"{len(upload.body)} bytes received"

        speech = await stack.client.audio.speech.create(
            model="backup", voice="alloy", input="hello"
        )
        assert speech.content == b"ID3-fake-audio" * 100

        stream = await stack.client.completions.create(
            model=PRIMARY_MODEL, prompt="abc", stream=True
        )
        assert "".join([c.choices[0].text async for c in stream]) == "abc"


async def test_without_a_model_the_default_upstream_answers_and_bad_json_is_a_400() -> None:
    async with proxy_stack() as stack:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{stack.base_url}/v1/images/generations", data=b"{}") as resp:
                # No model at all goes to the default upstream; the fake answers it.
                assert resp.status == 200
            async with http.post(
                f"{stack.base_url}/v1/embeddings",
                data=b"not json",
                headers={"Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_without_default_upstream_an_unknown_model_is_not_found(
    replay_base_url: str,
) -> None:
    async with running(create_app(make_config(replay_base_url), predictor=None)) as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
            with pytest.raises(openai.NotFoundError) as missing:
                await client.embeddings.create(model="text-embedding-3-small", input="x")
    assert missing.value.code == "model_not_found"


async def test_a_policy_name_off_chat_and_responses_is_a_400_naming_both() -> None:
    # The default upstream used to get the policy name and answer 404 "no such model".
    async with proxy_stack() as stack:
        with pytest.raises(openai.BadRequestError) as embeddings:
            await stack.client.embeddings.create(model="auto", input="hi")
        assert stack.primary.raw == [] and stack.backup.raw == []
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{stack.base_url}/v1/responses", json={"model": PRIMARY_MODEL, "input": "hi"}
            ) as resp,
        ):
            assert resp.status == 200  # upstream models still pass through
        (sent,) = stack.primary.raw
        assert sent.path_qs == "/v1/responses"
    error = embeddings.value
    assert error.param == "model"
    assert error.code == "policy_chat_only"
    assert "policies apply to chat completions and responses only" in error.message
    assert PRIMARY_MODEL in error.message
