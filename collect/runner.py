"""`collect()`: plan the work items, send the ones not done yet (several in flight), append each reply to the
ledger as it arrives, then build the cleaned dataset and the data card from the ledger."""

from __future__ import annotations

import hashlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from .aspects import CollectionSpec, load_collection_spec, read_topics
from .backends import ChatBackend, FatalBackendError, RequestFailed
from .cleaning import CleaningConfig, FilterConfig, parse_dialogue
from .config import CollectConfig
from .outputs import CollectReport, finalize
from .plan import WorkItem, plan_items
from .store import FAILURES_FILE, LEDGER_FILE, Ledger, check_run_settings


def _plan_settings(config: CollectConfig, spec: CollectionSpec, topics: list[str]) -> dict:
    """What a resume must share with the first run (else the plan, and so the skipped items, would differ)."""
    return {
        "mode": config.mode, "seed": config.seed, "attributes": spec.attributes, "attributes_fingerprint": spec.fingerprint,
        "topics_fingerprint": hashlib.sha256("\n".join(topics).encode()).hexdigest()[:16],
        "topics_file": config.topics_file or "corpus/topics.txt", "topics_count": len(topics),
        "split_fractions": list(config.split_fractions),
    }


def _send(items: list[WorkItem], backend: ChatBackend, ledger: Ledger, failures: Ledger, report: CollectReport, progress) -> None:
    """Run the items with at most `backend.max_concurrency` requests in flight; the calling thread alone writes."""
    pending = iter(items)
    parsed = failed = 0
    with ThreadPoolExecutor(max_workers=backend.max_concurrency) as pool:
        running = {}

        def top_up():
            while len(running) < backend.max_concurrency and report.stopped is None:
                item = next(pending, None)
                if item is None:
                    return
                messages = [{"role": "user", "content": item.prompt}]
                running[pool.submit(backend.chat, messages, item.seed)] = item
                report.requests_this_run += 1

        top_up()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                item = running.pop(future)
                try:
                    reply = future.result()
                except RequestFailed as error:
                    failed += 1
                    report.failed_this_run += 1
                    failures.append({"key": item.key, "topic": item.topic, "error": str(error)})
                    progress.write(f"{item.key}: request failed ({error}); it is retried on the next run.")
                except FatalBackendError as error:
                    report.stopped = str(error)
                else:
                    ledger.append({"key": item.key, "topic": item.topic, "personality": item.personality,
                                   "sample": item.sample, "choices": item.choices, "seed": item.seed, "reply": reply})
                    parsed += parse_dialogue(reply) is not None
                progress.update()
                progress.set_postfix(parsed=parsed, failed=failed, refresh=False)
            top_up()


def collect(config: CollectConfig, backend: ChatBackend, cleaning: CleaningConfig | None = None,
            filters: FilterConfig | None = None, spec: CollectionSpec | None = None) -> CollectReport:
    """Collect (or resume collecting) dialogues into `config.output_dir` and build the cleaned dataset.

    Each reply is appended to `collected.jsonl` (flushed and fsync'ed) as soon as it arrives; a rerun with the same
    settings skips the (topic, aspect, sample) items already there, so a killed run loses at most the requests in
    flight. Failed requests are logged in `failures.jsonl` and sent again on the next run. When the backend stops
    the run (wrong key / URL / model), what arrived is still built into the dataset, then `FatalBackendError` is
    raised.

    Returns:
        A `CollectReport` (per-aspect counts, drops by reason, rows per split, files), also in `summary.json`.
    """
    from tqdm.auto import tqdm

    cleaning, filters = cleaning or CleaningConfig(), filters or FilterConfig()
    spec = (spec or load_collection_spec(config.attributes_file)).select(config.only)
    topics = read_topics(config.topics_file)
    output_dir = Path(config.output_dir)
    items = plan_items(spec, topics, config.dialogues_per_aspect, config.seed, config.mode)
    run = check_run_settings(output_dir, _plan_settings(config, spec, topics), backend.describe())
    ledger, failures = Ledger(output_dir / LEDGER_FILE), Ledger(output_dir / FAILURES_FILE)
    done = {(r["key"], r["topic"]) for r in ledger.read()}
    failures.read()  # repairs a torn last line before appending
    todo = [item for item in items if item.identity not in done]
    if config.max_requests is not None:
        todo = todo[:config.max_requests]
    report = CollectReport()
    if todo:
        with tqdm(total=len(todo), desc="Collecting dialogues", unit="dialogue", disable=not config.progress) as progress:
            try:
                _send(todo, backend, ledger, failures, report, progress)
            finally:
                ledger.close()
                failures.close()
    report.retries = dict(getattr(backend, "retries", {}))
    run["dialogues_per_aspect"] = config.dialogues_per_aspect
    finalize(output_dir, items, spec, config.mode, config.seed, list(config.split_fractions), cleaning, filters, report, run)
    if report.stopped:
        raise FatalBackendError(report.stopped)
    return report
