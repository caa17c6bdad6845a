"""The Gradio demo of `miracle web`: a chat with a control per attribute (aspect + weight), folded-away options, a
side-by-side comparison of two personalities, and a plot of the latent's aspect probabilities before and after
sampling. Replies stream; generation goes through the same batching engine as `miracle serve` (the comparison's
two replies are decoded in one batch)."""

from __future__ import annotations

import queue

import gradio as gr
import pandas as pd

from .engine import BatchingEngine, EngineSettings
from .protocol import APIError, ChatRequest, Limits, parse_chat_request

ANY = "(any)"
PLOT_COLUMNS = ["bar", "aspect", "stage", "probability"]


def _text(content) -> str:
    """A chat message's text (Gradio hands content over as a string or a list of typed parts)."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def probability_frame(diagnostics: dict) -> pd.DataFrame:
    """Rows `(bar label, attribute: aspect, before|after sampling, probability)` for the plot (one bar each)."""
    rows = [(f"{attribute}: {d['aspect']} ({key})", f"{attribute}: {d['aspect']}", stage, d[key])
            for attribute, d in diagnostics.items()
            for key, stage in (("before", "before sampling"), ("after", "after sampling"))]
    return pd.DataFrame(rows, columns=PLOT_COLUMNS)


class WebDemo:
    """Builds the Gradio app for `model` + `processor` (`demo.blocks`); `demo.engine` decodes the replies."""

    def __init__(self, model, processor, title: str = "MIRACLE", max_new_tokens_limit: int = 128,
                 engine_settings: EngineSettings | None = None):
        self.model, self.config = model, model.config
        self.limits = Limits(max_new_tokens=max_new_tokens_limit)
        self.engine = BatchingEngine(model, processor, engine_settings or EngineSettings(batch_wait_s=0.05))
        self.blocks = self._build(title)

    # ------------------------------------------------------------------ generation
    def _request(self, messages, choices, weights, options) -> ChatRequest:
        use_ebm, guidance, temperature, max_tokens, seed = options
        personality = {a: c for a, c in zip(self.config.attribute_names, choices) if c and c != ANY}
        body = {"messages": messages, "personality": personality, "max_tokens": int(max_tokens),
                "attribute_weights": {a: float(w) for a, w, c in zip(self.config.attribute_names, weights, choices)
                                      if c and c != ANY},
                "use_ebm": bool(use_ebm), "latent_guidance_scale": float(guidance) if use_ebm else 0.0,
                "temperature": float(temperature), "seed": int(seed)}
        request = parse_chat_request(body, self.config, self.limits)
        self.engine.check_fits(request)
        return request

    def _stream(self, requests: list[ChatRequest]):
        """Submit the requests together; yield (texts so far, diagnostics per request or None) as they grow."""
        events: queue.Queue = queue.Queue()
        for i, request in enumerate(requests):
            self.engine.submit(request, lambda kind, payload, i=i: events.put((i, kind, payload)))
        texts, diagnostics = [""] * len(requests), [None] * len(requests)
        while any(d is None for d in diagnostics):
            i, kind, payload = events.get()
            if kind == "error":
                raise gr.Error(payload.message)
            if kind == "delta":
                texts[i] += payload
            else:
                texts[i], diagnostics[i] = payload.text, payload.latent_diagnostics
            yield texts, diagnostics

    def respond(self, message, history, *controls, progress=gr.Progress()):
        """The chat: append the user's message and stream the reply; finally plot the latent's probabilities."""
        count = len(self.config.attribute_names)
        choices, weights, options = controls[:count], controls[count:2 * count], controls[2 * count:]
        if not message or not message.strip():
            raise gr.Error("Type a message first.")
        messages = [{"role": m["role"], "content": _text(m["content"])} for m in history or []]
        messages.append({"role": "user", "content": message})
        try:
            request = self._request(messages, choices, weights, options)
        except APIError as error:
            raise gr.Error(error.message) from error
        progress(0, desc="Sampling the latent for this personality")
        chat = messages + [{"role": "assistant", "content": ""}]
        plot = probability_frame({})
        for texts, diagnostics in self._stream([request]):
            chat[-1]["content"] = texts[0]
            if diagnostics[0] is not None:
                plot = probability_frame(diagnostics[0])
            yield "", chat, plot

    def compare(self, message, *controls):
        """The same message answered in two personalities, decoded in one batch, side by side."""
        count = len(self.config.attribute_names)
        choices_a, choices_b, options = controls[:count], controls[count:2 * count], controls[2 * count:]
        if not message or not message.strip():
            raise gr.Error("Type a message first.")
        messages = [{"role": "user", "content": message}]
        ones = [1.0] * count
        try:
            requests = [self._request(messages, choices, ones, options) for choices in (choices_a, choices_b)]
        except APIError as error:
            raise gr.Error(error.message) from error
        for texts, _ in self._stream(requests):
            yield texts[0], texts[1]

    # ------------------------------------------------------------------ layout
    def _personality_controls(self, with_weights: bool, suffix: str = ""):
        dropdowns, sliders = [], []
        for attribute, aspects in self.config.attributes.items():
            with gr.Row():
                dropdowns.append(gr.Dropdown([ANY] + list(aspects), value=ANY, label=f"{attribute}{suffix}",
                                             elem_id=f"aspect-{attribute}{suffix.strip().replace(' ', '-')}"))
                if with_weights:
                    sliders.append(gr.Slider(-3, 3, value=1.0, step=0.1, label=f"{attribute} weight",
                                             elem_id=f"weight-{attribute}"))
        return dropdowns, sliders

    def _options(self):
        with gr.Accordion("Options", open=False):
            use_ebm = gr.Checkbox(True, label="EBM latent sampling (off: the paper's 'w/o EBM')")
            guidance = gr.Slider(0, 10, value=float(self.config.latent_guidance_scale), step=0.5,
                                 label="Latent guidance scale (0 = off)")
            temperature = gr.Slider(0, 2, value=0.0, step=0.05, label="Temperature (0 = greedy)")
            max_tokens = gr.Slider(1, self.limits.max_new_tokens, value=min(40, self.limits.max_new_tokens), step=1,
                                   label="Max new tokens")
            seed = gr.Number(0, precision=0, label="Seed (the latent's random start)")
        return [use_ebm, guidance, temperature, max_tokens, seed]

    def _build(self, title: str) -> gr.Blocks:
        with gr.Blocks(title=title) as blocks:
            gr.Markdown(f"# {title}\nChoose an aspect and a weight per attribute, then chat. The plot shows the "
                        "latent classifier's probability of each chosen aspect before and after the latent is "
                        "sampled for the personality.")
            with gr.Tab("Chat"):
                with gr.Row():
                    with gr.Column(scale=1):
                        choices, weights = self._personality_controls(with_weights=True)
                        options = self._options()
                    with gr.Column(scale=2):
                        chatbot = gr.Chatbot(label="Conversation", elem_id="chat", height=360)
                        message = gr.Textbox(label="Message", placeholder="Say something and press Enter",
                                             elem_id="message")
                        with gr.Row():
                            send = gr.Button("Send", variant="primary", elem_id="send")
                            clear = gr.Button("Clear")
                        plot = gr.BarPlot(probability_frame({}), x="bar", y="probability", color="stage", x_title="aspect",
                                          y_lim=[0, 1], label="Latent aspect probabilities", elem_id="plot")
                inputs = [message, chatbot, *choices, *weights, *options]
                send.click(self.respond, inputs, [message, chatbot, plot], api_name="chat")
                message.submit(self.respond, inputs, [message, chatbot, plot], api_name=False)
                clear.click(lambda: ([], probability_frame({})), None, [chatbot, plot], api_name=False)
            with gr.Tab("Compare"):
                compare_message = gr.Textbox(label="Message", elem_id="compare-message")
                with gr.Row():
                    with gr.Column():
                        choices_a, _ = self._personality_controls(with_weights=False, suffix=" (A)")
                        reply_a = gr.Textbox(label="Reply A", elem_id="reply-a", interactive=False)
                    with gr.Column():
                        choices_b, _ = self._personality_controls(with_weights=False, suffix=" (B)")
                        reply_b = gr.Textbox(label="Reply B", elem_id="reply-b", interactive=False)
                compare_options = self._options()
                gr.Button("Compare", variant="primary", elem_id="compare").click(
                    self.compare, [compare_message, *choices_a, *choices_b, *compare_options], [reply_a, reply_b],
                    api_name="compare")
        return blocks

    def launch(self, **kwargs):
        """Start the engine and launch the app (`kwargs` go to `gr.Blocks.launch`)."""
        self.engine.start()
        return self.blocks.launch(**kwargs)

    def close(self) -> None:
        self.blocks.close()
        self.engine.stop()


__all__ = ["WebDemo", "probability_frame"]
