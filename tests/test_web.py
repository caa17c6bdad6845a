"""`miracle web`: the Gradio app's API through `gradio_client`, and the page in a real headless Chromium (slow)."""

import copy
import shutil
import socket

import pytest

gradio_client = pytest.importorskip("gradio_client")

from modeling_miracle import MiracleProcessor  # noqa: E402
from modeling_miracle.serving.web import WebDemo, probability_frame  # noqa: E402

OPTIONS = [True, 0.0, 0.0, 6, 3]  # EBM on, no guidance, greedy, 6 new tokens, seed 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def web(separated_model, encoder_tokenizer, gpt2_tokenizer):
    processor = MiracleProcessor(copy.deepcopy(encoder_tokenizer), copy.deepcopy(gpt2_tokenizer), max_encoder_length=64,
                                 max_prompt_length=96)
    demo = WebDemo(separated_model, processor, max_new_tokens_limit=16)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    yield demo, url
    demo.close()


def test_probability_frame_has_a_bar_per_aspect_and_stage():
    frame = probability_frame({"attitude": {"aspect": "optimistic", "before": 0.4, "after": 0.9}})
    assert frame.values.tolist() == [["attitude: optimistic (before)", "attitude: optimistic", "before sampling", 0.4],
                                     ["attitude: optimistic (after)", "attitude: optimistic", "after sampling", 0.9]]


def test_chat_api_answers_in_the_chosen_personality(web):
    demo, url = web
    client = gradio_client.Client(url, verbose=False)
    choices = ["lyrical", "optimistic", "(any)"]
    weights = [1.0, 2.0, 1.0]
    message, chat, plot = client.predict("What do you do on weekends?", [], *choices, *weights, *OPTIONS,
                                         api_name="/chat")
    assert message == ""
    assert [m["role"] for m in chat] == ["user", "assistant"]
    reply = chat[-1]["content"]
    reply = reply if isinstance(reply, str) else "".join(p.get("text", "") for p in reply)
    assert reply.strip()
    rows = {(r[1], r[2]): r[3] for r in plot["data"]}
    assert set(rows) == {(f"{a}: {c}", s) for a, c in (("language_style", "lyrical"), ("attitude", "optimistic"))
                         for s in ("before sampling", "after sampling")}
    assert rows[("attitude: optimistic", "after sampling")] > rows[("attitude: optimistic", "before sampling")]
    # The same request through the engine gives the same reply (the app adds nothing of its own).
    request = demo._request([{"role": "user", "content": "What do you do on weekends?"}], choices, weights, OPTIONS)
    texts, _ = list(demo._stream([request]))[-1]
    assert texts[0] == reply.strip()


def test_compare_api_answers_one_message_in_two_personalities(web):
    demo, url = web
    client = gradio_client.Client(url, verbose=False)
    a, b = client.predict("Do you like rainy days?", "lyrical", "optimistic", "critical", "plain", "pessimistic",
                          "emotional", *OPTIONS, api_name="/compare")
    assert a.strip() and b.strip() and a != b
    # The two replies are one batch of the engine (the adaptive ODE solver's steps depend on the batch).
    requests = [demo._request([{"role": "user", "content": "Do you like rainy days?"}], choices, [1.0] * 3, OPTIONS)
                for choices in (["lyrical", "optimistic", "critical"], ["plain", "pessimistic", "emotional"])]
    assert list(demo._stream(requests))[-1][0] == [a, b]


def test_bad_input_shows_an_error_naming_what_is_valid(web):
    _, url = web
    client = gradio_client.Client(url, verbose=False)
    with pytest.raises(Exception, match="Type a message"):
        client.predict("  ", [], "(any)", "(any)", "(any)", 1.0, 1.0, 1.0, *OPTIONS, api_name="/chat")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_page_in_headless_chromium(web, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    _, url = web
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#message textarea", timeout=60_000)
        for attribute, aspect in (("attitude", "optimistic"), ("language_style", "lyrical")):
            page.locator(f"#aspect-{attribute} input").click()
            page.get_by_role("option", name=aspect, exact=True).click()
        plot_before = page.locator("#plot").inner_html()
        page.locator("#message textarea").fill("What do you do on weekends?")
        page.locator("#send").click()
        reply = page.locator("#chat .message.bot, #chat [data-testid='bot']").last
        reply.wait_for(timeout=60_000)
        page.wait_for_function("() => document.querySelector('#plot').innerText.includes('optimistic')",
                               timeout=60_000)
        assert reply.inner_text().strip()
        assert page.locator("#plot").inner_html() != plot_before
        assert "attitude: optimistic" in page.locator("#plot").inner_text()
        shot = tmp_path / "miracle-web.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        browser.close()
