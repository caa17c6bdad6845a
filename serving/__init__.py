"""Serving MIRACLE to people and programs: an OpenAI-compatible chat-completions server with per-request
personalities decoded in shared batches (`miracle serve`), and a Gradio web demo (`miracle web`).

The server needs the `serve` extra (`pip install "miracle-dialogue[serve]"`), the demo the `web` extra.
"""
