"""The ``Examples`` section of each command's ``--help``, by command path ("" is ``kvgraph`` itself).

Kept in one table so that every command, whichever module defines it, gets one;
``tests/cli/test_docs_cli.py`` fails for a command without an example.
"""

from __future__ import annotations

_RAW: dict[str, list[str]] = {
    "": [
        "kvgraph demo                                 # sample documents, questions, cited answers",
        "kvgraph ingest ~/papers --exclude drafts/    # then: kvgraph ask 'What is ...?'",
        "kvgraph --kb ~/kb search 'wifi channels' -k 3 --csv",
        "kvgraph COMMAND -h                           # each command's options and examples",
    ],
    "init": [
        "kvgraph init --references both --chunk-size 200",
        "kvgraph --kb ~/kb init --embedder onnx-fp32",
    ],
    "ingest": [
        "kvgraph ingest ~/papers ~/notes --exclude drafts/",
        "kvgraph ingest docs/ --include '*.md' --json",
        "find ~/papers -name '*.pdf' -mtime -7 | kvgraph ingest -",
        "find . -name '*.md' -print0 | kvgraph ingest - --null",
    ],
    "sync": [
        "kvgraph sync",
        "kvgraph sync ~/papers --quiet",
    ],
    "search": [
        "kvgraph search 'safety fine-tuning' -k 5 --filter 'page>=20'",
        "kvgraph search 'wifi channels' --mode sparse --csv > hits.csv",
        "echo 'how do bees dance?' | kvgraph search - --nl",
    ],
    "ask": [
        "kvgraph ask 'How often should solar panels be cleaned?'",
        "kvgraph ask 'Which channels do not overlap?' --filter file_type=pdf --json",
        "cat question.txt | kvgraph ask -",
    ],
    "stats": ["kvgraph stats", "kvgraph --kb ~/kb stats --json"],
    "documents": ["kvgraph documents", "kvgraph documents --csv > documents.csv"],
    "delete": ["kvgraph delete ~/papers/old-draft.pdf", "kvgraph delete DOC_ID"],
    "eval": ["kvgraph eval retrieval --dataset DIR --format beir -k 1,5,10", "kvgraph eval retrieval -h"],
    "eval retrieval": [
        "kvgraph eval retrieval --dataset ../shared/datasets/hotpotqa_hipporag --format hipporag \\",
        "    --retrievers bm25,dense,hybrid -k 2,5 --metrics recall,hit_rate",
        "kvgraph eval retrieval --dataset qa.json --format llamaindex-qa --retrievers kvgraph,graph --out report/",
    ],
    "eval page-questions": ["kvgraph eval page-questions --kind sentence --out l2-eval"],
    "eval answers": ["kvgraph eval answers --dataset squad-dev.json --format squad --max-items 2 --out answers.json"],
    "eval generate": ["kvgraph eval generate --out qa.json --per-node 2 --max-nodes 100"],
    "finetune": [
        "kvgraph finetune dataset --out pairs.jsonl",
        "kvgraph finetune split --pairs pairs.jsonl --out-dir split/",
        "kvgraph finetune embedder --pairs split/train.jsonl --out my-model/",
    ],
    "finetune dataset": [
        "kvgraph finetune dataset --out pairs.jsonl --source ict,heading,link",
        "kvgraph finetune dataset --out pairs.jsonl --source llm --max-nodes 200   # needs an LLM",
    ],
    "finetune split": ["kvgraph finetune split --pairs pairs.jsonl --out-dir split/ --test-ratio 0.1"],
    "finetune embedder": [
        "kvgraph finetune embedder --pairs split/train.jsonl --validation split/test.jsonl --out my-model/",
        "kvgraph reembed --embedder my-model/   # then switch the knowledge base to it",
    ],
    "finetune augment": ["kvgraph finetune augment --pairs split/train.jsonl --out examples.jsonl -k 3"],
    "finetune export": ["kvgraph finetune export --examples examples.jsonl --out train.jsonl --format openai"],
    "finetune train": [
        "kvgraph finetune train --backend openai --train train.jsonl --model gpt-4o-mini-2024-07-18",
        "kvgraph finetune train --backend local --train train.jsonl --model ./base-llm --out adapter/",
    ],
    "finetune eval": ["kvgraph finetune eval --test split/test.jsonl --model ft:my-model --max-items 50"],
    "reembed": ["kvgraph reembed --embedder my-model/", "kvgraph reembed --embedder onnx-fp32 --json"],
    "demo": ["kvgraph demo", "kvgraph demo --questions 3 --dir /tmp/kvgraph-demo"],
    "serve": [
        "kvgraph serve                                  # http://127.0.0.1:8000/",
        "kvgraph serve --host 0.0.0.0 --api-key-file ~/.kvgraph-key",
    ],
    "chat": [
        "kvgraph chat",
        "kvgraph chat --list",
        "printf 'Who deciphered it?\\nWhen?\\n' | kvgraph chat",
    ],
    "check": ["kvgraph check", "kvgraph check --json"],
    "repair": ["kvgraph repair"],
    "migrate": [
        "kvgraph migrate --store 'postgresql://kv@db:5432/kv?schema=papers'",
        "kvgraph migrate --store embedded --graph embedded",
    ],
    "store": ["kvgraph store stats .kvgraph/store", "kvgraph store vacuum .kvgraph/store"],
    "store stats": ["kvgraph store stats .kvgraph/store --json"],
    "store check": ["kvgraph store check .kvgraph/store"],
    "store vacuum": ["kvgraph store vacuum .kvgraph/store"],
    "graph": [
        "kvgraph graph import microservices.cypher",
        "kvgraph graph query 'MATCH (n) RETURN labels(n)[0] AS label, count(*) AS n'",
    ],
    "graph import": [
        "kvgraph graph import microservices.cypher",
        "kvgraph graph import people.csv --label Person --key id",
        "kvgraph graph import knows.csv --rel-type KNOWS --source-label Person --target-label Person",
    ],
    "graph query": [
        "kvgraph graph query 'MATCH (t:Task) WHERE t.status = $s RETURN t.name' --param s=open",
        "kvgraph graph query 'MATCH (n) RETURN n.name AS name LIMIT 5' --csv",
        "cat query.cypher | kvgraph graph query -",
    ],
    "graph schema": ["kvgraph graph schema", "kvgraph graph schema --json"],
    "graph build": ["kvgraph graph build", "kvgraph graph build --extractor both --concurrency 8   # needs an LLM"],
    "graph index-nodes": ["kvgraph graph index-nodes --label Task --text name,description,status"],
    "graph ask": [
        "kvgraph graph ask 'How will the recommendation service be updated?'",
        "kvgraph graph ask 'How many open tickets are there?' --tool graph   # needs an LLM",
    ],
}


def _section(lines: list[str]) -> str:
    # "\b" keeps click from re-wrapping the lines of the paragraph that follows it
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


EXAMPLES: dict[str, str] = {path: _section(lines) for path, lines in _RAW.items()}
EXAMPLES[""] += (
    "\n\n\b\nExit status: 0 ok, 1 error, 2 usage, 3 files skipped or none ingested, 130 interrupted"
    ' (docs/cli.md).\nShell completion: eval "$(_KVGRAPH_COMPLETE=bash_source kvgraph)"'
    " (or zsh_source, fish_source)."
)
