"""`kvgraph eval ...`: retrieval and answer evaluation, and dataset generation."""

from __future__ import annotations

from pathlib import Path

import click


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
        type=click.Choice(["beir", "hipporag", "llamaindex", "llamaindex-qa", "squad"]),
        help="beir folder, HippoRAG questions (+ _corpus.json), LlamaIndex RAG or QA JSON, SQuAD JSON.",
    )
    @click.option("--retrievers", default="bm25,dense,hybrid", show_default=True, help="Comma-separated.")
    @click.option("-k", "ks", default="1,5,10", show_default=True, help="Cut-offs, comma-separated.")
    @click.option(
        "--metrics",
        default="hit_rate,mrr,recall,precision,ndcg",
        show_default=True,
        help="Columns to show: hit_rate, mrr, recall, precision, ndcg.",
    )
    @click.option("--max-items", type=int, default=None, help="SQuAD: only the first N articles.")
    @click.option("--work-dir", type=click.Path(file_okay=False), default=None, help="Where the eval KB is kept.")
    @click.option("--out", type=click.Path(file_okay=False), default=None, help="Write JSON, CSV and a PNG chart here.")
    def retrieval(
        dataset_path: str,
        fmt: str,
        retrievers: str,
        ks: str,
        metrics: str,
        max_items: int | None,
        work_dir: str | None,
        out: str | None,
    ) -> None:
        """Hit rate, MRR, recall, precision and nDCG at k for each retriever, side by side."""
        from kvgraph.eval.runner import metric_keys, print_table, read_dataset, run_retrieval, save_reports

        k_values = _ks(ks)
        dataset = read_dataset(dataset_path, fmt, max_items=max_items)
        names = [r.strip() for r in retrievers.split(",") if r.strip()]
        click.echo(f"{dataset.name}: {len(dataset.queries)} queries over {len(dataset.passages)} passages")
        run = run_retrieval(dataset, names, k_values, work_dir=work_dir)
        wanted = [m.strip() for m in metrics.split(",") if m.strip()]
        bad = [m for m in wanted if m not in ("hit_rate", "mrr", "recall", "precision", "ndcg")]
        if bad:
            raise click.BadParameter(f"unknown metric(s) {bad}", param_hint="--metrics")
        keys = metric_keys(k_values, wanted)
        title = f"{dataset.name} ({len(dataset.queries)} queries)"
        print_table(run, keys, title)
        if out:
            for p in save_reports(run, keys, Path(out), title):
                click.echo(f"wrote {p}")
