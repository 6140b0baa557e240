"""`kvgraph eval ...`: retrieval and answer evaluation, and dataset generation."""

from __future__ import annotations

from pathlib import Path

import click

from kvgraph.cli.common import activity, console, prepare_model, progress_bar, quiet


def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise click.BadParameter(f"{text!r}: write k values as integers separated by commas, e.g. 2,5,10") from None
    if not ks or ks[0] < 1:
        raise click.BadParameter(f"{text!r}: k values must be positive")
    return ks


def register(main: click.Group) -> None:
    @main.group("eval")
    def eval_group() -> None:
        """Measure retrieval and answers on labelled datasets."""

    @eval_group.command("retrieval")
    @click.option("--dataset", "dataset_path", required=True, type=click.Path(exists=True), help="File or folder.")
    @click.option(
        "--format",
        "fmt",
        required=True,
        type=click.Choice(["beir", "hipporag", "llamaindex", "llamaindex-qa", "squad", "pages"]),
        help="beir folder, HippoRAG questions (+ _corpus.json), LlamaIndex RAG or QA JSON, SQuAD JSON, "
        "or questions with gold pages of a shared text (bench/data/llama2_dev_questions.json).",
    )
    @click.option(
        "--retrievers",
        default="bm25,dense,hybrid",
        show_default=True,
        help="Comma-separated specs NAME[:key=value,...]: kvgraph (KnowledgeBase search; any setting, e.g. "
        "kvgraph:mode=hybrid,references=both), graph (kb.graph walk, e.g. graph:damping=0.5); dense, bm25, "
        "hybrid, hybrid_alpha (passage KB); base, chunk_refs, metadata_refs and their _bm25/_hybrid/"
        "_with_parents variants (node references). A list value is written a+b.",
    )
    @click.option(
        "--set",
        "assignments",
        multiple=True,
        metavar="KEY=VALUE",
        help="A knowledge-base setting for every kvgraph/graph retriever (repeatable; a spec's own options win).",
    )
    @click.option("-k", "ks", default="1,5,10", show_default=True, help="Cut-offs, comma-separated.")
    @click.option(
        "--metrics",
        default="hit_rate,mrr,recall,precision,ndcg",
        show_default=True,
        help="Columns to show: hit_rate, mrr, recall, precision, ndcg.",
    )
    @click.option("--max-items", type=int, default=None, help="SQuAD: only the first N articles.")
    @click.option(
        "--datasets", "datasets_dir", type=click.Path(file_okay=False), default=None, help="Shared datasets folder."
    )
    @click.option("--work-dir", type=click.Path(file_okay=False), default=None, help="Where the eval KBs are kept.")
    @click.option("--out", type=click.Path(file_okay=False), default=None, help="Write JSON, CSV and an SVG chart.")
    def retrieval(
        dataset_path: str,
        fmt: str,
        retrievers: str,
        assignments: tuple[str, ...],
        ks: str,
        metrics: str,
        max_items: int | None,
        datasets_dir: str | None,
        work_dir: str | None,
        out: str | None,
    ) -> None:
        """Hit rate, MRR, recall, precision and nDCG at k for each retriever, side by side."""
        from kvgraph.errors import InvalidInputError
        from kvgraph.eval.runner import (
            metric_keys,
            print_table,
            read_dataset,
            resolve_retrievers,
            run_retrieval,
            save_reports,
        )
        from kvgraph.eval.specs import parse_assignments

        k_values = _ks(ks)
        try:
            settings = parse_assignments(assignments)
        except InvalidInputError as e:
            raise click.BadParameter(str(e), param_hint="--set") from None
        try:  # every spec checked before the run, which can take minutes
            resolve_retrievers([retrievers], settings)
        except InvalidInputError as e:
            raise click.BadParameter(str(e), param_hint="--retrievers") from None
        wanted = [m.strip() for m in metrics.split(",") if m.strip()]
        bad = [m for m in wanted if m not in ("hit_rate", "mrr", "recall", "precision", "ndcg")]
        if bad:
            raise click.BadParameter(f"unknown metric(s) {bad}", param_hint="--metrics")
        dataset = read_dataset(dataset_path, fmt, max_items=max_items, datasets=datasets_dir)
        click.echo(f"{dataset.name}: {len(dataset.queries)} queries over {len(dataset.passages)} passages")
        run = run_retrieval(dataset, [retrievers], k_values, work_dir=work_dir, progress=not quiet(), settings=settings)
        keys = metric_keys(k_values, wanted)
        title = f"{dataset.name} ({len(dataset.queries)} queries)"
        screen = console()  # the terminal's width, or unwrapped when piped
        print_table(run, keys, title, console=screen)
        tags = sorted({t for q in dataset.queries for t in q.tags})
        for tag in tags:
            n = sum(tag in q.tags for q in dataset.queries)
            print_table(run, keys, f"{dataset.name}: the {n} {tag} questions", console=screen, tag=tag)
        if out:
            for p in save_reports(run, keys, Path(out), title):
                click.echo(f"wrote {p}")

    @eval_group.command("page-questions")
    @click.option(
        "--kind",
        type=click.Choice(["sentence", "keywords", "masked"]),
        default="sentence",
        show_default=True,
        help="Query built from each source sentence: verbatim, 5 of its content words, or minus its 3 rarest words.",
    )
    @click.option("--per-parent", type=int, default=2, show_default=True, help="Questions per 1024-token parent.")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--datasets", "root", type=click.Path(file_okay=False), default=None, help="Shared datasets folder.")
    @click.option("--out", required=True, type=click.Path(file_okay=False), help="BEIR folder to write.")
    def page_questions(kind: str, per_parent: int, seed: int, root: str | None, out: str) -> None:
        """Build the LLM-free Llama 2 question set (see docs/eval.md) as a BEIR folder + rag_dataset.json."""
        from kvgraph.eval.page_questions import (
            default_token_counter,
            llama2_question_set,
            save_beir,
            save_llamaindex_rag,
        )

        dataset, _ = llama2_question_set(default_token_counter(), kind, per_parent, seed, root)
        folder = save_beir(dataset, out)
        save_llamaindex_rag(dataset, folder / "rag_dataset.json")
        click.echo(
            f"{len(dataset.queries)} {kind} questions over {len(dataset.passages)} passages "
            f"(1024-token parents of {dataset.meta['pages']} pages) -> {folder}"
        )

    @eval_group.command("answers")
    @click.option("--dataset", "dataset_path", required=True, type=click.Path(exists=True), help="File or folder.")
    @click.option(
        "--format", "fmt", required=True, type=click.Choice(["hipporag", "llamaindex", "squad"]), help="Dataset format."
    )
    @click.option("--max-items", type=int, default=None, help="Only the first N questions (SQuAD: N articles).")
    @click.option("-k", "k", type=int, default=5, show_default=True, help="Chunks retrieved per question.")
    @click.option("--work-dir", type=click.Path(file_okay=False), default=None, help="Where the eval KB is kept.")
    @click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write per-question results as JSON.")
    def answers(
        dataset_path: str, fmt: str, max_items: int | None, k: int, work_dir: str | None, out: str | None
    ) -> None:
        """Ask every question and score the answers (with an LLM configured, also judge them)."""
        import json

        from kvgraph.eval.answers import evaluate_answers
        from kvgraph.eval.runner import passages_as_documents, read_dataset
        from kvgraph.kb import KnowledgeBase

        dataset = read_dataset(dataset_path, fmt, max_items=max_items if fmt == "squad" else None)
        if max_items and fmt != "squad":
            dataset.queries = dataset.queries[:max_items]
        kb_dir = Path(work_dir or Path(".kvgraph-eval") / f"{dataset.name}-answers")
        with KnowledgeBase.open(kb_dir) as kb:
            prepare_model(kb)
            progress = progress_bar("embedding passages")
            try:
                kb.add_documents(passages_as_documents(dataset), progress=progress)
            finally:
                progress.finish()
            llm = kb.llm()
            with activity(f"answering {len(dataset.queries)} questions"):
                report = evaluate_answers(kb, dataset, llm=llm, k=k)
        click.echo(
            f"{dataset.name}: {len(report.rows)} questions, answers by {'LLM' if llm else 'extractive answerer'}"
        )
        for key, value in report.means.items():
            click.echo(f"  {key:20s} {value:.3f}")
        if out:
            Path(out).write_text(json.dumps(report.to_dict(), indent=1, default=str))
            click.echo(f"wrote {out}")

    @eval_group.command("generate")
    @click.option(
        "--kb", "kb_path", type=click.Path(file_okay=False), default=None, help="Knowledge base (default --kb)."
    )
    @click.option("--per-node", type=int, default=2, show_default=True, help="Questions per chunk.")
    @click.option("--max-nodes", type=int, default=None, help="Only the first N chunks.")
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="EmbeddingQAFinetuneDataset JSON.")
    @click.pass_context
    def generate(ctx: click.Context, kb_path: str | None, per_node: int, max_nodes: int | None, out: str) -> None:
        """Write N questions per chunk with the configured LLM (resumable), as LlamaIndex QA JSON."""
        from kvgraph.eval.generate import generate_questions, save_json, to_llamaindex_qa
        from kvgraph.kb import KnowledgeBase, default_kb_path

        root = (ctx.find_root().obj or {}).get("kb")
        path = Path(kb_path or root or default_kb_path())
        with KnowledgeBase.open(path, read_only=True) as kb:
            llm = kb.require_llm("kvgraph eval generate")
            ids = kb.store.ids()[:max_nodes]
            nodes = [n for n in kb.store.get(ids) if n is not None]
            cache = Path(out).with_suffix(".cache.jsonl")
            questions = generate_questions(llm, nodes, per_node=per_node, cache_path=cache)
        save_json(to_llamaindex_qa(questions, nodes), out)
        st = questions.stats
        click.echo(f"{len(questions)} questions for {len(nodes)} chunks -> {out} ({st.total_tokens} tokens used)")
