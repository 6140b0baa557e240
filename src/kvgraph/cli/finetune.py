"""`kvgraph finetune ...` (datasets, splits, the embedder, the LLM) and `kvgraph reembed`.

The commands compose :mod:`kvgraph.finetune` with :mod:`kvgraph.eval` (question generation,
dataset readers, answer scoring) over one :class:`~kvgraph.kb.KnowledgeBase`; docs/finetune.md
walks through them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from kvgraph.cli.common import echo_json, kb_path
from kvgraph.errors import InvalidInputError


def _sources(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in ("ict", "heading", "link", "llm")]
    if bad or not names:
        raise click.BadParameter(
            f"{text!r}: choose from ict, heading, link, llm (comma-separated)", param_hint="--source"
        )
    return names


def _excluded(path: str | None) -> list[str]:
    """Texts that must not become training queries: one per line, a JSON list, or JSONL with "query" or "text"
    (a pairs file, a BEIR ``queries.jsonl``)."""
    if path is None:
        return []
    p = Path(path)
    text = p.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, list) and all(isinstance(x, str) for x in data):
        return list(data)
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        value = record.get("query", record.get("text")) if isinstance(record, dict) else None
        if isinstance(value, str):
            out.append(value)
        elif line.strip():
            out.append(line.strip())
    return out


def _chunks(kb: Any, max_nodes: int | None) -> list[Any]:
    """The nodes search returns (parents when the knowledge base has node references)."""
    role = {"role": "parent"} if kb.stored_references() != "none" else None
    ids = kb.store.ids(filters=role)[:max_nodes]
    return [n for n in kb.store.get(ids) if n is not None]


def _status(text: str) -> None:
    click.echo(text, err=True)


def register(main: click.Group) -> None:
    @main.group("finetune")
    def finetune_group() -> None:
        """Fine-tune on your own corpus: pairs, splits, the embedder (offline) and the LLM."""

    # ------------------------------------------------------------------ dataset

    @finetune_group.command("dataset")
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pairs JSONL to write.")
    @click.option(
        "--source",
        "source",
        default="ict",
        show_default=True,
        help="ict, heading, link (offline), llm (needs an LLM).",
    )
    @click.option("--labelled", type=click.Path(exists=True), default=None, help="Add a labelled set's questions.")
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["beir", "hipporag", "llamaindex", "llamaindex-qa", "squad"]),
        default=None,
        help="Format of --labelled.",
    )
    @click.option("--answers", type=click.Path(exists=True), default=None, help="QueryResponseDataset JSON or JSONL.")
    @click.option("--per-chunk", type=int, default=2, show_default=True, help="Inverse-cloze pairs per chunk.")
    @click.option("--per-node", type=int, default=2, show_default=True, help="LLM questions per chunk.")
    @click.option("--max-nodes", type=int, default=None, help="Only the first N chunks.")
    @click.option("--exclude", type=click.Path(exists=True), default=None, help="Texts never to use as queries.")
    @click.option("-k", "k", type=int, default=None, help="Chunks retrieved per LLM answer (default top_k).")
    @click.option("--concurrency", type=int, default=4, show_default=True, help="LLM requests at once.")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def dataset(
        ctx: click.Context,
        out: str,
        source: str,
        labelled: str | None,
        fmt: str | None,
        answers: str | None,
        per_chunk: int,
        per_node: int,
        max_nodes: int | None,
        exclude: str | None,
        k: int | None,
        concurrency: int,
        seed: int,
        as_json: bool,
    ) -> None:
        """Training pairs from the knowledge base's chunks (offline, or with the LLM), a labelled set or a file."""
        from kvgraph.finetune.offline import Excluded, heading_pairs, inverse_cloze_pairs, link_pairs
        from kvgraph.finetune.pairs import TrainingPair, pair_stats, save_pairs
        from kvgraph.kb import KnowledgeBase

        names = _sources(source)
        if labelled and not fmt:
            raise click.BadParameter("--labelled needs --format", param_hint="--format")
        skip = Excluded(_excluded(exclude))
        pairs: list[TrainingPair] = []
        report: dict[str, Any] = {}
        needs_kb = bool({"ict", "heading", "link", "llm"} & set(names))
        if needs_kb:
            path = kb_path(ctx)
            with KnowledgeBase.open(path, read_only="llm" not in names) as kb:
                nodes = _chunks(kb, max_nodes)
                if not nodes:
                    raise InvalidInputError(f"knowledge base {path} has no chunks: ingest documents first")
                if "ict" in names:
                    pairs += inverse_cloze_pairs(nodes, per_chunk=per_chunk, seed=seed, exclude=skip)
                if "heading" in names:
                    pairs += heading_pairs(nodes, exclude=skip)
                if "link" in names:
                    pairs += link_pairs(nodes, seed=seed, exclude=skip)
                if "llm" in names:
                    llm_pairs, llm_report = _llm_pairs(kb, nodes, Path(out), per_node, k, concurrency, skip)
                    pairs += llm_pairs
                    report["llm"] = llm_report
        if labelled and fmt:
            pairs += _labelled(labelled, fmt, skip)
        if answers:
            from kvgraph.finetune.qa import load_responses

            pairs += [p for p in load_responses(answers) if not skip.hit(p.query)]
        if not pairs:
            raise InvalidInputError("no training pair was made: check the sources and the knowledge base")
        save_pairs(pairs, out)
        report = {"out": out, **pair_stats(pairs), **report}
        if as_json:
            echo_json(report)
        else:
            sources = ", ".join(f"{n} {c}" for n, c in report["by_source"].items())
            click.echo(f"{report['pairs']} pairs ({sources}) from {report['documents']} documents -> {out}")

    def _labelled(path: str, fmt: str, skip: Any) -> list[Any]:
        from kvgraph.eval.runner import read_dataset
        from kvgraph.finetune.offline import labelled_pairs
        from kvgraph.schema import Node

        ds = read_dataset(path, fmt)
        passages = {p.id: Node(p.id, p.full_text, {"title": p.title}, ref_doc_id=p.title or p.id) for p in ds.passages}
        questions = [(q.text, q.relevant) for q in ds.queries if not skip.hit(q.text)]
        return labelled_pairs(questions, passages)

    def _llm_pairs(
        kb: Any, nodes: list[Any], out: Path, per_node: int, k: int | None, concurrency: int, skip: Any
    ) -> tuple[list[Any], dict[str, Any]]:
        from kvgraph.eval.generate import generate_questions
        from kvgraph.finetune.pairs import TrainingPair
        from kvgraph.finetune.qa import AnswerStats, answer_questions

        llm = kb.require_llm("kvgraph finetune dataset --source llm")
        by_id = {n.id: n for n in nodes}

        def show_questions(done: int, total: int) -> None:
            _status(f"questions: {done}/{total} chunks")

        questions = generate_questions(
            llm,
            nodes,
            per_node=per_node,
            concurrency=concurrency,
            cache_path=out.with_name(out.name + ".questions.jsonl"),
            progress=show_questions,
        )
        asked = [
            TrainingPair(
                q.question,
                positive=by_id[q.node_id].text,
                source="llm",
                doc_id=by_id[q.node_id].ref_doc_id or q.node_id,
                positive_id=q.node_id,
            )
            for q in questions
            if not skip.hit(q.question)
        ]

        def show_answers(s: AnswerStats) -> None:
            _status(
                f"answers: {s.done}/{s.questions} ({s.cached} cached, {s.empty} empty), "
                f"{s.requests} requests, {s.prompt_tokens + s.completion_tokens:,} tokens"
            )

        answered, stats = answer_questions(
            kb,
            asked,
            out.with_name(out.name + ".answers.jsonl"),
            k=k,
            concurrency=concurrency,
            progress=show_answers,
        )
        qs = questions.stats
        return answered, {
            "questions": len(asked),
            "question_chunks_failed": qs.nodes_failed,
            "question_tokens": qs.total_tokens,
            "answers": stats.answered + stats.cached,
            "answers_cached": stats.cached,
            "answers_empty": stats.empty,
            "answers_uncited": stats.uncited,
            "answer_requests": stats.requests,
            "answer_tokens": stats.prompt_tokens + stats.completion_tokens,
        }

    # ------------------------------------------------------------------ split

    @finetune_group.command("split")
    @click.option("--pairs", "pairs_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--out-dir", required=True, type=click.Path(file_okay=False), help="Writes train.jsonl, test.jsonl.")
    @click.option("--by", type=click.Choice(["document", "shuffle"]), default="document", show_default=True)
    @click.option("--test-ratio", type=float, default=0.3, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
    def split(pairs_path: str, out_dir: str, by: str, test_ratio: float, seed: int, as_json: bool) -> None:
        """Train/test split with no question (normalised) on both sides and, by default, no document."""
        from kvgraph.finetune.pairs import load_pairs, save_pairs
        from kvgraph.finetune.split import split_pairs

        result = split_pairs(load_pairs(pairs_path), test_ratio=test_ratio, by=by, seed=seed)
        out = Path(out_dir)
        save_pairs(result.train, out / "train.jsonl")
        save_pairs(result.test, out / "test.jsonl")
        stats = result.stats()
        (out / "split.json").write_text(json.dumps(stats, indent=1) + "\n")
        if as_json:
            echo_json(stats)
            return
        for side in ("train", "test"):
            s = stats[side]
            click.echo(f"{side}: {s['pairs']} pairs, {s['documents']} documents, {s['by_source']}")
        click.echo(
            f"shared: {stats['leaks']['questions']} questions, {stats['leaks']['documents']} documents"
            + (" (a shuffled split shares documents)" if by == "shuffle" else "")
        )
        click.echo(f"wrote {out / 'train.jsonl'}, {out / 'test.jsonl'}, {out / 'split.json'}")

    # ------------------------------------------------------------------ embedder

    @finetune_group.command("embedder")
    @click.option("--pairs", "pairs_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--out", required=True, type=click.Path(file_okay=False), help="The new model directory.")
    @click.option(
        "--validation", type=click.Path(exists=True, dir_okay=False), default=None, help="Early-stopping pairs."
    )
    @click.option("--base", default=None, help="Model to start from (default: the knowledge base's embedder).")
    @click.option("--epochs", type=int, default=1, show_default=True)
    @click.option("--batch-size", type=int, default=32, show_default=True)
    @click.option("--lr", type=float, default=2e-5, show_default=True)
    @click.option("--max-steps", type=int, default=None, help="Stop after N steps.")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--hard-negatives", is_flag=True, help="Mine one hard negative per pair from the knowledge base.")
    @click.option("--no-export", is_flag=True, help="Build the ONNX int8 file on first use instead of now.")
    @click.option("--overwrite", is_flag=True, help="Replace an existing --out directory.")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def embedder(
        ctx: click.Context,
        pairs_path: str,
        out: str,
        validation: str | None,
        base: str | None,
        epochs: int,
        batch_size: int,
        lr: float,
        max_steps: int | None,
        seed: int,
        hard_negatives: bool,
        no_export: bool,
        overwrite: bool,
        as_json: bool,
    ) -> None:
        """Fine-tune the embedding model on the pairs (in-batch negatives, early stopping) and export it."""
        from kvgraph.finetune.embedder import EmbedderTrainConfig, TrainProgress, finetune_embedder
        from kvgraph.finetune.pairs import load_pairs
        from kvgraph.kb import KnowledgeBase

        pairs = load_pairs(pairs_path)
        path = kb_path(ctx)
        has_kb = (path / "store").exists()
        if base is None and has_kb:
            with KnowledgeBase.open(path, read_only=True) as kb:
                base = kb.settings.embedder
        if hard_negatives:
            if not has_kb:
                raise InvalidInputError(f"--hard-negatives mines the knowledge base's index, and {path} has none")
            from kvgraph.finetune.negatives import mine_hard_negatives

            with KnowledgeBase.open(path, read_only=True) as kb:
                # what the model itself confuses: its own ranking, not a reranker's
                pairs = mine_hard_negatives(pairs, kb.retriever(mode="dense", rerank="none"))
            _status(f"hard negatives: {sum(1 for p in pairs if p.negative)} of {len(pairs)} pairs")

        def show(p: TrainProgress) -> None:
            if p.validation_mrr is not None or p.step == p.total_steps:
                val = f", validation MRR@10 {p.validation_mrr:.4f}" if p.validation_mrr is not None else ""
                _status(f"step {p.step}/{p.total_steps}: loss {p.loss:.4f}{val} ({p.seconds:.0f} s)")

        config = EmbedderTrainConfig(
            epochs=epochs, batch_size=batch_size, learning_rate=lr, max_steps=max_steps, seed=seed
        )
        report = finetune_embedder(
            pairs,
            out,
            base_model=base,
            config=config,
            validation=load_pairs(validation) if validation else None,
            progress=show,
            overwrite=overwrite,
            export=not no_export,
        )
        if as_json:
            echo_json(report.to_dict())
            return
        b, a = report.validation_before, report.validation_after
        click.echo(
            f"{report.steps} steps in {report.seconds:.0f} s (best at step {report.best_step}"
            + (", stopped early" if report.stopped_early else "")
            + f"); validation MRR@10 {b.get('mrr@10', math.nan):.4f} -> {a.get('mrr@10', math.nan):.4f}, "
            f"hit@1 {b.get('hit@1', math.nan):.4f} -> {a.get('hit@1', math.nan):.4f}; "
            f"peak RSS {report.peak_rss_mb:.0f} MB"
        )
        click.echo(f"model: {report.model_dir} (embedder spec {report.spec})")
        click.echo(f"switch the knowledge base to it: kvgraph --kb {path} reembed --embedder {report.model_dir}")

    # ------------------------------------------------------------------ augment

    @finetune_group.command("augment")
    @click.option("--pairs", "pairs_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="Examples JSONL to write.")
    @click.option("-k", "k", type=int, default=3, show_default=True, help="Chunks retrieved per question.")
    @click.option(
        "--mode", type=click.Choice(["dense", "sparse", "hybrid", "mmr", "graph"]), default=None, help="Retrieval mode."
    )
    @click.option("--filter", "filters", multiple=True, metavar="EXPR", help="Metadata filter (repeat to AND).")
    @click.option("--contexts", type=click.Choice(["joined", "separate"]), default="joined", show_default=True)
    @click.option("--distractor-ratio", type=float, default=0.0, show_default=True, help="Share given a random chunk.")
    @click.option("--no-context-ratio", type=float, default=0.0, show_default=True, help="Share given no context.")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def augment(
        ctx: click.Context,
        pairs_path: str,
        out: str,
        k: int,
        mode: str | None,
        filters: tuple[str, ...],
        contexts: str,
        distractor_ratio: float,
        no_context_ratio: float,
        seed: int,
        as_json: bool,
    ) -> None:
        """Each (question, answer) pair with its retrieved chunks, in the prompt `ask` sends."""
        from collections import Counter

        from kvgraph.filters import parse_expression
        from kvgraph.finetune.augment import AugmentConfig, save_examples
        from kvgraph.finetune.augment import augment as make_examples
        from kvgraph.finetune.pairs import load_pairs
        from kvgraph.kb import KnowledgeBase
        from kvgraph.schema import NodeWithScore

        pairs = load_pairs(pairs_path)
        parsed = [parse_expression(e) for e in filters]
        spec = None if not parsed else parsed[0] if len(parsed) == 1 else {"$and": parsed}
        config = AugmentConfig(
            k=k, contexts=contexts, distractor_ratio=distractor_ratio, no_context_ratio=no_context_ratio, seed=seed
        )
        with KnowledgeBase.open(kb_path(ctx), read_only=True) as kb:
            retriever = kb.retriever(filters=spec, mode=mode)
            pool = [NodeWithScore(n, 0.0) for n in _chunks(kb, None)] if distractor_ratio else []
            examples = make_examples(pairs, retriever, config, distractors=pool)
        save_examples(examples, out)
        kinds = dict(Counter(e.kind for e in examples))
        report = {"out": out, "pairs": len(pairs), "with_answer": sum(1 for p in pairs if p.answer), "examples": kinds}
        if as_json:
            echo_json(report)
        else:
            click.echo(f"{len(examples)} examples {kinds} from {report['with_answer']} answered pairs -> {out}")

    # ------------------------------------------------------------------ export

    @finetune_group.command("export")
    @click.option("--examples", "examples_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="Training JSONL to write.")
    @click.option("--format", "fmt", type=click.Choice(["openai", "sft", "dpo"]), default="openai", show_default=True)
    @click.option("--max-tokens", type=int, default=16_384, show_default=True, help="Longer examples are dropped.")
    @click.option("--tokenizer", type=click.Path(exists=True, dir_okay=False), default=None, help="tokenizer.json.")
    @click.option(
        "--rejected",
        type=click.Choice(["base", "no-context", "other"]),
        default="base",
        show_default=True,
        help="DPO: the base model's answer, its answer without context, or another question's answer.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def export(
        ctx: click.Context,
        examples_path: str,
        out: str,
        fmt: str,
        max_tokens: int,
        tokenizer: str | None,
        rejected: str,
        as_json: bool,
    ) -> None:
        """Validate and write OpenAI chat JSONL, TRL SFT JSONL or DPO pairs; report what was dropped and why."""
        from kvgraph.finetune.augment import load_examples
        from kvgraph.finetune.export import export_chat, export_dpo, rejected_answers, tokenizer_counter

        examples = load_examples(examples_path)
        count = tokenizer_counter(tokenizer) if tokenizer else None
        if fmt == "dpo":
            llm = None
            if rejected != "other":
                from kvgraph.kb import KnowledgeBase

                with KnowledgeBase.open(kb_path(ctx), read_only=True) as kb:
                    llm = kb.require_llm(f"kvgraph finetune export --format dpo --rejected {rejected}")
                    bad = rejected_answers(
                        examples, rejected, llm, Path(out).with_name(Path(out).name + ".rejected.jsonl")
                    )
            else:
                bad = rejected_answers(examples, rejected)
            report = export_dpo(examples, bad, out, max_tokens=max_tokens, count=count)
        else:
            report = export_chat(examples, out, fmt=fmt, max_tokens=max_tokens, count=count)
        data = report.to_dict()
        if as_json:
            echo_json({**data, "dropped_examples": [d.__dict__ for d in report.dropped]})
            return
        click.echo(
            f"{report.written} examples -> {out} ({report.tokens_total:,} tokens, largest {report.tokens_largest:,}, "
            f"{report.token_count}); dropped {len(report.dropped)}"
        )
        for d in report.dropped[:20]:
            click.echo(f"  dropped #{d.index} ({d.query[:60]!r}): {d.reason}", err=True)
        if len(report.dropped) > 20:
            click.echo(f"  ... and {len(report.dropped) - 20} more: {data['dropped_by_reason']}", err=True)
        for w in report.warnings:
            click.echo(f"warning: {w}", err=True)

    # ------------------------------------------------------------------ train

    @finetune_group.command("train")
    @click.option("--backend", type=click.Choice(["openai", "local"]), required=True)
    @click.option("--train", "train_path", type=click.Path(exists=True, dir_okay=False), default=None)
    @click.option("--validation", type=click.Path(exists=True, dir_okay=False), default=None)
    @click.option("--model", default=None, help="Base model: an API model name, or a local model directory.")
    @click.option("--suffix", default=None, help="openai: a suffix for the fine-tuned model's name.")
    @click.option("--resume", default=None, metavar="JOB_ID", help="openai: wait for this job (or 'record').")
    @click.option("--record", type=click.Path(dir_okay=False), default="finetune-job.json", show_default=True)
    @click.option("--poll", type=float, default=10.0, show_default=True, help="openai: seconds between polls.")
    @click.option("--out", type=click.Path(file_okay=False), default=None, help="local: the adapter directory.")
    @click.option("--method", type=click.Choice(["sft", "dpo"]), default="sft", show_default=True)
    @click.option("--epochs", type=float, default=1.0, show_default=True)
    @click.option("--max-steps", type=int, default=-1, show_default=True, help="local: > 0 overrides --epochs.")
    @click.option("--lr", type=float, default=2e-4, show_default=True, help="local: learning rate.")
    @click.option("--lora-r", type=int, default=8, show_default=True)
    @click.option("--merge", is_flag=True, help="local: also write the merged model (for vLLM and other servers).")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    def train(
        backend: str,
        train_path: str | None,
        validation: str | None,
        model: str | None,
        suffix: str | None,
        resume: str | None,
        record: str,
        poll: float,
        out: str | None,
        method: str,
        epochs: float,
        max_steps: int,
        lr: float,
        lora_r: int,
        merge: bool,
        as_json: bool,
    ) -> None:
        """Fine-tune the LLM: through the OpenAI fine-tuning API, or locally with LoRA (TRL + PEFT)."""
        if backend == "openai":
            from kvgraph.finetune.openai_ft import FineTuneRecord, client_from_env, run_finetune

            def show(rec: FineTuneRecord, events: list[dict[str, Any]]) -> None:
                for e in events:
                    _status(f"  {e.get('message', '')}")
                _status(f"job {rec.job_id}: {rec.status}")

            with client_from_env() as client:
                result = run_finetune(
                    client,
                    record,
                    training_path=train_path,
                    model=model,
                    validation_path=validation,
                    suffix=suffix,
                    resume=resume,
                    poll_interval=poll,
                    on_update=None if as_json else show,
                )
            if as_json:
                echo_json(result.__dict__)
            else:
                click.echo(f"fine-tuned model: {result.fine_tuned_model} (job {result.job_id}, record {record})")
                click.echo(f"use it: KVGRAPH_LLM_MODEL={result.fine_tuned_model} kvgraph ask ...")
            return
        from kvgraph.finetune.local_lm import LocalTrainConfig, train_local

        if not train_path or not model or not out:
            raise click.UsageError("--backend local needs --train FILE, --model DIR and --out DIR")

        def step(n: int, total: int, loss: float) -> None:
            _status(f"step {n}/{total}: loss {loss:.4f}")

        cfg = LocalTrainConfig(
            method=method, epochs=epochs, max_steps=max_steps, learning_rate=lr, lora_r=lora_r, merge=merge
        )
        rep = train_local(model, train_path, out, cfg, progress=None if as_json else step)
        if as_json:
            echo_json(rep.to_dict())
        else:
            first, last = (rep.losses[0], rep.losses[-1]) if rep.losses else (math.nan, math.nan)
            click.echo(
                f"{rep.method} LoRA adapter ({rep.trainable_parameters:,} trainable parameters) on {rep.device}: "
                f"{rep.steps} steps in {rep.seconds:.0f} s, loss {first:.4f} -> {last:.4f} -> {rep.out_dir}"
            )

    # ------------------------------------------------------------------ eval

    @finetune_group.command("eval")
    @click.option("--test", "test_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--model", required=True, help="The fine-tuned model (as the LLM server names it).")
    @click.option("--base-model", default=None, help="The model to compare with (default: the configured one).")
    @click.option("--judge-model", default=None, help="The judge (default: the base model).")
    @click.option("-k", "k", type=int, default=None, help="Chunks retrieved per question (default top_k).")
    @click.option("--max-items", type=int, default=None, help="Only the first N test pairs.")
    @click.option("--out", type=click.Path(file_okay=False), default=None, help="Write JSON and a chart here.")
    @click.option("--json", "as_json", is_flag=True, help="Print the means as JSON.")
    @click.pass_context
    def evaluate(
        ctx: click.Context,
        test_path: str,
        model: str,
        base_model: str | None,
        judge_model: str | None,
        k: int | None,
        max_items: int | None,
        out: str | None,
        as_json: bool,
    ) -> None:
        """Base vs fine-tuned LLM on the held-out pairs, through the same RAG pipeline: judge + similarity."""
        from kvgraph.eval.answers import evaluate_answers
        from kvgraph.eval.datasets import EvalDataset, Query
        from kvgraph.finetune.compare import ANSWER_KEYS, comparison_rows, save_comparison
        from kvgraph.finetune.pairs import load_pairs
        from kvgraph.kb import KnowledgeBase

        pairs = [p for p in load_pairs(test_path) if p.answer.strip()][:max_items]
        if not pairs:
            raise InvalidInputError(f"{test_path}: no pair with a reference answer to evaluate against")
        path = kb_path(ctx)
        with KnowledgeBase.open(path, read_only=True) as kb:
            configured = kb.require_llm("kvgraph finetune eval (the base model and the judge)")
            base = base_model or str(configured.model)
        dataset = EvalDataset(
            "finetune-test",
            [],
            [
                Query(f"q{i}", p.query, [p.positive_id] if p.positive_id else [], [p.answer])
                for i, p in enumerate(pairs)
            ],
        )
        means: dict[str, dict[str, float]] = {}
        rows: dict[str, Any] = {}
        with KnowledgeBase.open(path, read_only=True, llm_model=judge_model or base) as judge_kb:
            judge = judge_kb.require_llm("the judge")
            for name, m in (("base", base), ("fine-tuned", model)):
                _status(f"asking {len(pairs)} questions with {m} ...")
                with KnowledgeBase.open(path, read_only=True, llm_model=m, answerer="llm") as kb:
                    report = evaluate_answers(kb, dataset, llm=judge, k=k)
                label = f"{name} ({m})"
                means[label] = report.means
                rows[label] = report.to_dict()["rows"]
        table = comparison_rows(means, ANSWER_KEYS)
        if as_json:
            echo_json(means)
        else:
            from rich.console import Console
            from rich.table import Table

            t = Table(title=f"{len(pairs)} held-out questions, judge {judge_model or base}")
            for col in ["metric", *means, "change"]:
                t.add_column(col)
            for row in table:
                t.add_row(*row)
            Console().print(t)
        if out:
            for p in save_comparison(means, rows, out, f"base vs fine-tuned, {len(pairs)} held-out questions"):
                click.echo(f"wrote {p}", err=as_json)

    # ------------------------------------------------------------------ reembed

    @main.command("reembed")
    @click.option("--embedder", required=True, help="Embedder spec or a (fine-tuned) model directory.")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def reembed(ctx: click.Context, embedder: str, as_json: bool) -> None:
        """Re-embed every chunk with another model and switch to it atomically (crash-safe)."""
        from kvgraph.kb import KnowledgeBase

        def show(done: int, total: int) -> None:
            if not as_json and (done == total or done % 1024 == 0):
                _status(f"re-embedded {done}/{total} nodes")

        with KnowledgeBase.open(kb_path(ctx)) as kb:
            report = kb.reembed(embedder, progress=show)
        if as_json:
            echo_json(report)
            return
        if not report["changed"]:
            click.echo(f"already embedded with {report['new_model']}: nothing to do")
            return
        click.echo(
            f"{report['nodes']} nodes re-embedded in {report['seconds']:.1f} s: {report['old_model']} -> "
            f"{report['new_model']}" + (" (document graph rebuilt)" if report["doc_graph_rebuilt"] else "")
        )
        for note in report["notes"]:
            click.echo(f"note: {note}", err=True)
