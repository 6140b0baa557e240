"""Re-run of issue 12 items 4, 5, 7 against whichever kvgraph is first on PYTHONPATH.

python audit.py folders|filters|queries|secrets  -> one JSON line of counts
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = Path("/work/main")


# ------------------------------------------------------------------ item 4: folders


def make_case(root: Path, case: str) -> None:
    root.mkdir(parents=True)
    (root / "good.txt").write_text("A good file about lighthouses.\n")
    b = os.fsencode(root)
    if case == "non-utf8-name":
        with open(os.path.join(b, b"caf\xe9.txt"), "w") as f:
            f.write("Latin-1 named file.\n")
    elif case == "symlink-loop":
        os.symlink("b.txt", root / "a.txt")
        os.symlink("a.txt", root / "b.txt")
    elif case == "fifo":
        os.mkfifo(root / "pipe.txt")
    elif case == "dev-zero":
        os.symlink("/dev/zero", root / "zeros.txt")
    elif case == "dev-null":
        os.symlink("/dev/null", root / "null.md")
    elif case == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(root / "sock.txt"))
    elif case == "broken-symlink":
        os.symlink("nowhere.txt", root / "dangling.txt")
    elif case == "deep-tree":
        p = root
        for _ in range(1100):
            p = p / "d"
            p.mkdir()
        (p / "bottom.txt").write_text("deep file\n")
    elif case == "over-size-limit":
        (root / "big.txt").write_text("word " * 400_000)  # 2 MB; the limit is set to 1 MB
    elif case == "word-5000":
        (root / "tok.txt").write_text("Before. " + "a" * 5000 + " After.\n")
    elif case == "binary-named-txt":
        (root / "bin.txt").write_bytes(b"\x00\x01\x02" * 1000)
    elif case == "latin1-content":
        (root / "latin.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    elif case == "control-chars-in-name":
        (root / "evil\x1b[2Jname.txt").write_text("terminal escape in the name\n")
    else:
        raise SystemExit(f"unknown case {case}")


CASES = [
    "non-utf8-name", "symlink-loop", "fifo", "dev-zero", "dev-null", "socket", "broken-symlink", "deep-tree",
    "over-size-limit", "word-5000", "binary-named-txt", "latin1-content", "control-chars-in-name",
]  # fmt: skip
# what a correct run does with the odd entry: "ingest" it, or "refuse" it with a reason
WANT = {"non-utf8-name": "ingest", "deep-tree": "ingest", "word-5000": "ingest", "control-chars-in-name": "ingest"}


def run_case(case: str) -> dict[str, object]:
    """In this process (a child): ingest the folder with the Ingestor; report what happened."""
    from kvgraph.embed.hashing import HashingEmbedder
    from kvgraph.ingest.pipeline import Ingestor
    from kvgraph.ingest.registry import Registry
    from kvgraph.ingest.splitter import SentenceSplitter
    from kvgraph.store import EmbeddedVectorStore

    work = Path(tempfile.mkdtemp(prefix="kvg-audit-"))
    root = work / "folder"
    make_case(root, case)
    emb = HashingEmbedder(dim=16)
    store = EmbeddedVectorStore.open(work / "store")
    reg = Registry(work / "reg.sqlite")
    kwargs = {"max_file_bytes": 1 << 20} if "max_file_bytes" in Ingestor.__init__.__code__.co_varnames else {}
    ing = Ingestor(store, reg, emb, SentenceSplitter(emb.token_counter(), 200, 20), **kwargs)
    try:
        return _ingest_and_classify(ing, store, reg, root)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


def _ingest_and_classify(ing, store, reg, root) -> dict[str, object]:  # type: ignore[no-untyped-def]
    try:
        report = ing.ingest_paths([root])
    except BaseException as exc:
        return {"outcome": "crashed", "error": f"{type(exc).__name__}: {str(exc)[:120]}"}
    longest = max((len(t) for t in [n.text for n in store.get(store.ids())]), default=0) if store.count() else 0
    reasons = [s.reason for s in report.skipped]
    odd_ingested = report.files_ingested > 1
    printable = all(s.path.isprintable() for s in report.skipped) and all(r.path.isprintable() for r in reg.all())
    if reasons:
        outcome = "refused"
    elif odd_ingested:
        outcome = "ingested"
    else:
        outcome = "silent"
    return {"outcome": outcome, "reasons": reasons, "longest_chunk": longest, "printable_names": printable}


def folders() -> dict[str, object]:
    results: dict[str, object] = {}
    for case in CASES:
        try:
            out = subprocess.run(
                [sys.executable, __file__, "case", case], capture_output=True, text=True, timeout=60, env=os.environ
            )
            if out.returncode != 0:
                lines = out.stderr.strip().splitlines()
                results[case] = {"outcome": "crashed", "error": lines[-1][:160] if lines else f"exit {out.returncode}"}
            else:
                results[case] = json.loads(out.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            results[case] = {"outcome": "hung (killed after 60 s)"}
    return results


# ------------------------------------------------------------------ item 5: filters


def filters_audit(n_filters: int = 7000, seed: int = 12) -> dict[str, object]:
    sys.path.insert(0, str(REPO / "tests" / "store"))
    sys.path.insert(0, str(REPO / "tests"))
    import numpy as np

    from kvgraph.filters import parse_filter
    from kvgraph.store.columns import MetadataColumns

    ref = reference()
    rng = random.Random(seed)
    ts = 1733363000123456789
    pool = [ts, ts - 89, ts + 1, float(ts), 2**53 + 1, float(2**53), 2**63 - 1, -(2**63), 2**63, 10**20, 1, 2.5, -3]
    metas = [{"v": rng.choice(pool)} if rng.random() < 0.9 else {} for _ in range(400)]
    metas += [{"v": [rng.choice(pool), rng.choice(pool)]} for _ in range(50)]
    cols = MetadataColumns()
    errors: dict[str, int] = {}
    wrong = tried = 0
    try:
        cols.append(metas)
    except BaseException as exc:
        return {"tried": n_filters, "crashed_building_columns": f"{type(exc).__name__}: {exc}"}
    for _ in range(n_filters):
        op = rng.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains"])
        operand = [rng.choice(pool) for _ in range(3)] if op in ("$in", "$nin") else rng.choice([*pool, 10**309])
        spec = {"v": {op: operand}}
        tried += 1
        try:
            got = cols.mask(parse_filter(spec))
        except BaseException as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        want = np.array([ref(spec, md) for md in metas])
        wrong += int(not np.array_equal(got, want))
    odd: dict[str, str] = {}
    deep: dict[str, object] = {"page": 1}
    for _ in range(1000):
        deep = {"$not": deep}
    for name, spec in [
        ("depth-1000", deep),
        ("int-10^309", {"v": {"$gt": 10**309}}),
        ("int-10^400-eq", {"v": 10**400}),
    ]:
        try:
            cols.mask(parse_filter(spec))
            odd[name] = "ok"
        except BaseException as exc:
            odd[name] = type(exc).__name__ + (
                ": " + str(exc)[:90] if type(exc).__name__ == "InvalidFilterError" else ""
            )
    stored_big = MetadataColumns()
    try:
        stored_big.append([{"v": 10**400}])
        stored_big.mask(parse_filter({"v": {"$gt": 1}}))
        odd["stored-int-10^400"] = "ok"
    except BaseException as exc:
        odd["stored-int-10^400"] = type(exc).__name__
    return {"tried": tried, "wrong_results": wrong, "exceptions": errors, "odd": odd}


def reference():  # the brute-force reference of tests/store/test_filters_property.py
    import importlib.util

    spec = importlib.util.spec_from_file_location("ref", REPO / "tests" / "store" / "test_filters_property.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader
    spec.loader.exec_module(mod)
    return mod.ref_match


# ------------------------------------------------------------------ item 5: query strings


def queries_audit() -> dict[str, object]:
    from kvgraph.errors import KvgraphError
    from kvgraph.kb import KnowledgeBase
    from kvgraph.schema import Document

    path = Path(tempfile.mkdtemp()) / "kb"
    with KnowledgeBase.open(path) as kb:
        kb.add_documents(
            [Document(id="a", text="Lighthouses guide ships."), Document(id="b", text="Caf\u00e9 au lait.")]
        )
    rng = random.Random(3)
    qs = ["caf\udce9", "\udcff", "a\x00b", "\ud800", "\ufffe\uffff", b"\xff\xfeq".decode("utf-8", "surrogateescape")]
    qs += ["".join(chr(rng.randrange(0x110000)) for _ in range(12)) for _ in range(20)]
    counts: dict[str, int] = {"tried": 0, "results": 0, "clear_error": 0}
    crashes: dict[str, int] = {}
    with KnowledgeBase.open(path, read_only=True) as kb:
        for q in qs:
            for mode in ("dense", "sparse", "hybrid", "mmr"):
                counts["tried"] += 1
                try:
                    kb.search(q, k=2, mode=mode)
                    counts["results"] += 1
                except KvgraphError:
                    counts["clear_error"] += 1
                except BaseException as exc:
                    crashes[type(exc).__name__] = crashes.get(type(exc).__name__, 0) + 1
    return {**counts, "crashed": crashes}


# ------------------------------------------------------------------ item 7: secrets


def secrets_audit() -> dict[str, object]:
    import io

    from kvgraph.testing.openai_server import FakeOpenAIServer

    secret = "sk-audit-7f6e5d4c3b2a"
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    server = FakeOpenAIServer().start()
    probes: dict[str, str] = {}
    from kvgraph.llm import OpenAICompatibleLLM, llm_from_env
    from kvgraph.transport import normalize_base_url

    def probe(name: str, fn) -> None:
        log.truncate(0)
        log.seek(0)
        try:
            shown = str(fn())
        except BaseException as exc:
            shown = "".join(traceback.format_exception(exc))
        shown += log.getvalue()
        probes[name] = "LEAK" if secret in shown else "clean"

    url = f"http://alice:{secret}@127.0.0.1:{server.port}/v1"
    llm = OpenAICompatibleLLM(url, "test-model", max_retries=1)
    probe("success (httpx request log)", lambda: llm.complete([]))
    probe("repr", lambda: repr(llm))
    server.fail_next(3, 503)
    probe("503 retried", lambda: llm.complete([]))
    probe("404 wrong prefix", lambda: OpenAICompatibleLLM(url.replace("/v1", "/v9"), "m", max_retries=0).complete([]))
    server.malformed = True
    probe("invalid JSON", lambda: llm.complete([]))
    server.malformed = False
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    probe(
        "connection refused",
        lambda: OpenAICompatibleLLM(url.replace(str(server.port), str(port)), "m", max_retries=0).complete([]),
    )
    probe("no model configured", lambda: llm_from_env({"KVGRAPH_LLM_BASE_URL": url}))
    probe("bad scheme", lambda: normalize_base_url(url.replace("http", "ftp")))
    from kvgraph.embed.openai_compat import OpenAICompatibleEmbedder

    emb = OpenAICompatibleEmbedder(url, "embed-model", max_retries=0)
    server.embedding_data_hook = lambda d: d[:1]
    probe("embedder bad response", lambda: emb.embed(["a", "b"]))
    server.stop()
    # the writer lock file, as written by a process whose command line carries the secret
    from kvgraph.locking import WriterLock

    d = Path(tempfile.mkdtemp())
    code = (
        "import sys; from pathlib import Path; from kvgraph.locking import WriterLock;"
        f"sys.argv=['/usr/bin/kvgraph','ingest','--param','api_key={secret}'];"
        "l=WriterLock(Path(sys.argv[0] and '"
        + str(d / "LOCK")
        + "')); l.acquire(); print('ready', flush=True); input()"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    content = (d / "LOCK").read_text()
    probes["lock file content"] = "LEAK" if secret in content else "clean"
    probes["lock file mode"] = oct((d / "LOCK").stat().st_mode & 0o777)
    try:
        WriterLock(d / "LOCK").acquire()
    except BaseException as exc:
        probes["lock refusal message"] = "LEAK" if secret in str(exc) else f"clean: {str(exc)[-80:]}"
    p.communicate("\n")
    return probes


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "case":
        print(json.dumps(run_case(sys.argv[2])))
    else:
        fn = {"folders": folders, "filters": filters_audit, "queries": queries_audit, "secrets": secrets_audit}[what]
        print(json.dumps(fn(), indent=1, default=str))
