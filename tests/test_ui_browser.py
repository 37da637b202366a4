"""The Dagster UI end to end: `dagster dev` on a tiny world, driven by headless Chromium.

A real webserver, daemon and code server (started like `make ui`, in their own process group)
on a temporary DAGSTER_HOME; Playwright drives the Debian Chromium (`/usr/bin/chromium`,
installed by `scripts/install_chromium.sh`; never `playwright install`). Screenshots go to
`test-artifacts/ui/`. Synchronization is by explicit waits on page content and on the GraphQL
API, never by sleeping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
from llm_fakes import fake_llm_server

from genre_dagster.demo import DemoWorldConfig, generate_world

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Python playwright is not installed (pip install playwright)"
)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TINY = dict(n_news=500, n_users=300, n_days=4, impressions_per_day=120, seed=11)
GROUPS = [
    "raw",
    "features",
    "enrichment",
    "embeddings",
    "scoring",
    "evaluation",
    "serving",
    "monitoring",
]
# One asset per stage, from raw data to the served lists.
MAIN_KEYS = [
    "raw/news",
    "raw/behaviors",
    "stg_news",
    "impressions",
    "enrichment/news_summaries",
    "embeddings/news_embeddings",
    "scoring/nrms",
    "evaluation/leaderboard",
    "serving/challenger",
    "serving/recommendations",
    "monitoring/interaction_drift",
]
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
STARTUP_SECONDS = 240  # ~40 s on a loaded 2-core machine; the code location imports dbt
RUN_SECONDS = 300
UI_MS = 60_000  # page waits; the first page load compiles nothing but fetches a lot


# ---------------------------------------------------------------- dagster dev


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DagsterDev:
    """A `dagster dev` process group on loopback and a small GraphQL client for it."""

    def __init__(self, home: Path, env: dict[str, str], log_path: Path) -> None:
        self.home = home
        self.env = env
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        # Own session/process group: the whole tree (webserver, daemon, code servers, run
        # workers) is stopped together, and terminal signals of the test runner never reach it.
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster")),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.base_url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_until_ready(self, timeout: float = STARTUP_SECONDS) -> float:
        """Wait for the webserver to answer and the code location to load; seconds taken."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/server_info", timeout=5) as r:
                    if r.status == 200 and self._location_loaded():
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)  # polling interval of a wait-for loop
        raise AssertionError(f"dagster dev not ready after {timeout} s:\n{self.log_tail()}")

    def _location_loaded(self) -> bool:
        data = self.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
        )
        entries = data["workspaceOrError"]["locationEntries"]
        for entry in entries:
            error = entry["locationOrLoadError"] or {}
            if error.get("__typename") == "PythonError":
                raise AssertionError(f"code location {entry['name']} failed: {error['message']}")
        return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL it: a `dagster dev` started without a
        terminal may ignore SIGTERM. Then kill any straggler carrying our DAGSTER_HOME."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        for pid in _pids_with_env("DAGSTER_HOME", str(self.home)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()

    # -- runs

    def run_ids(self) -> set[str]:
        data = self.graphql("{ runsOrError(limit: 200) { ... on Runs { results { runId } } } }")
        return {r["runId"] for r in data["runsOrError"]["results"]}

    def wait_for_new_run(self, known: set[str], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = self.run_ids() - known
            if new:
                assert len(new) == 1, f"expected one new run, got {sorted(new)}"
                return new.pop()
            time.sleep(0.5)
        raise AssertionError(f"no run was launched within {timeout} s:\n{self.log_tail()}")

    def wait_for_run(self, run_id: str, timeout: float = RUN_SECONDS) -> str:
        query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.graphql(query, {"id": run_id})["runOrError"]["status"]
            if status in TERMINAL:
                return status
            time.sleep(1)
        raise AssertionError(f"run {run_id} not finished after {timeout} s")

    def step_failures(self, run_id: str) -> list[str]:
        data = self.graphql(
            "query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { "
            "__typename ... on ExecutionStepFailureEvent { stepKey error { message } } } } } }",
            {"id": run_id},
        )
        events = data["logsForRun"]["events"]
        return [
            f"{e['stepKey']}: {e['error']['message']}"
            for e in events
            if e["__typename"] == "ExecutionStepFailureEvent"
        ]

    def asset_nodes(self) -> list[dict]:
        data = self.graphql("{ assetNodes { assetKey { path } groupName isPartitioned } }")
        return data["assetNodes"]


def _pids_with_env(name: str, value: str) -> list[int]:
    """Processes whose environment has name=value (our dagster dev's children only)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            variables = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in variables:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ui")
    generate_world(DemoWorldConfig(**TINY), root / "mind")
    home = root / "dagster_home"
    home.mkdir()
    # The project's instance settings: telemetry off and the `duckdb` pool limited to 1.
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    assert "enabled: false" in (home / "dagster.yaml").read_text()
    return {"root": root, "home": home, "data": root / "data", "mind": root / "mind"}


@pytest.fixture(scope="module")
def report_server(world):
    """Serves the reports folder over HTTP on loopback, as `make ui` does: the UI links to
    reports by URL (browsers refuse file:// links from an http page)."""
    folder = world["data"] / "reports"
    folder.mkdir(parents=True, exist_ok=True)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def settings_env(world, report_server) -> dict[str, str]:
    """GENRE_* variables of the UI's code location (the fake LLM server stays up meanwhile)."""
    with fake_llm_server() as server:
        yield {
            "GENRE_REPORTS_URL": report_server,
            "GENRE_ENV": "local",
            "GENRE_DATA_DIR": str(world["data"]),
            "GENRE_SOURCE": "mind",
            "GENRE_SOURCE_PATH": str(world["mind"]),
            "GENRE_LANDING_DIR": str(world["root"] / "landing"),
            "GENRE_LLM_BACKEND": "openai",
            "GENRE_LLM_BASE_URL": server.base_url,
            "GENRE_LLM_MODEL": "fake",
            "GENRE_DUCKDB_PATH": str(world["data"] / "genre.duckdb"),
        }


@pytest.fixture(scope="module")
def dagster_ui(world, settings_env):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENRE_", "DAGSTER_"))}
    env.update(settings_env)
    env.update(
        DAGSTER_HOME=str(world["home"]),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        # dbt runs as a subprocess of the run worker and must be found next to this Python.
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    )
    dev = DagsterDev(world["home"], env, ARTIFACTS / "dagster_dev.log")
    try:
        seconds = dev.wait_until_ready()
        print(f"dagster dev ready in {seconds:.1f} s on {dev.base_url}")
        yield dev
    finally:
        dev.stop()


# ---------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run scripts/install_chromium.sh (Debian chromium)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1100})
    # A fresh profile shows Dagster's "Join the community" dialog over every page; mark it
    # seen (what its Skip button does), and `_dismiss_dialogs` clicks Skip if it still shows.
    context.add_init_script("window.localStorage.setItem('communityNux', '1')")
    context.set_default_timeout(UI_MS)
    tab = context.new_page()
    yield tab
    context.close()


def _dismiss_dialogs(page) -> None:
    skip = page.get_by_role("button", name="Skip")
    if skip.count() and skip.first.is_visible():
        skip.first.click()


def _shot(page, name: str, full_page: bool = False) -> Path:
    """Screenshot once finite animations (dialog fades, graph transitions) have finished;
    endless ones (spinners) are ignored."""
    page.wait_for_function(
        "() => document.getAnimations().every(a => a.playState !== 'running' || !a.effect"
        " || a.effect.getComputedTiming().iterations === Infinity)"
    )
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def _graph_labels(page) -> set[str]:
    """Text of the asset graph's nodes (groups and assets are HTML inside the SVG)."""
    return set(
        page.evaluate(
            "Array.from(document.querySelectorAll('svg foreignObject'))"
            ".map(e => e.textContent.trim()).filter(t => t)"
        )
    )


def _wait_for_labels(page, labels: set[str], timeout_ms: int = UI_MS) -> None:
    page.wait_for_function(
        "labels => { const seen = new Set(Array.from(document.querySelectorAll("
        "'svg foreignObject')).map(e => e.textContent.trim()));"
        " return labels.every(l => seen.has(l)); }",
        arg=sorted(labels),
        timeout=timeout_ms,
    )


# ---------------------------------------------------------------- tests


def test_lineage_and_catalog_show_every_stage(dagster_ui, page):
    """Global lineage shows the seven stage groups; a selection of one asset per stage renders
    each asset as a graph node; the catalog lists every asset of the code location."""
    page.goto(f"{dagster_ui.base_url}/asset-groups")
    _wait_for_labels(page, set(GROUPS))
    _dismiss_dialogs(page)
    _shot(page, "01_global_lineage_groups")

    selection = " or ".join(f'key:"{key}"' for key in MAIN_KEYS)
    page.goto(f"{dagster_ui.base_url}/asset-groups~{urllib.parse.quote(selection, safe='')}/")
    _wait_for_labels(page, {"raw", "serving"})
    _dismiss_dialogs(page)
    names = {key.split("/")[-1] for key in MAIN_KEYS}
    if not names <= _graph_labels(page):
        # Groups start collapsed unless this browser expanded them before.
        canvas = page.locator("svg:has(foreignObject)").first.bounding_box()
        page.mouse.click(canvas["x"] + 10, canvas["y"] + 10, button="right")
        page.get_by_role("menuitem", name="Expand all groups").click()
    _wait_for_labels(page, names)
    _shot(page, "02_lineage_one_asset_per_stage")

    expected = {"/".join(n["assetKey"]["path"]) for n in dagster_ui.asset_nodes()}
    assert set(MAIN_KEYS) <= expected
    # The catalog renders only the rows in view: make the view tall enough for all of them.
    page.set_viewport_size({"width": 1600, "height": 400 + 90 * len(expected)})
    page.goto(f"{dagster_ui.base_url}/assets")
    page.get_by_text("Asset name").wait_for()
    page.locator("a[href='/assets/raw/news']").first.wait_for()
    _dismiss_dialogs(page)
    hrefs = page.eval_on_selector_all(
        "a[href^='/assets/']", "links => links.map(a => a.getAttribute('href'))"
    )
    listed = {h.removeprefix("/assets/").split("?")[0] for h in hrefs}
    sync_api.expect(page.get_by_text("Loading...")).to_have_count(0)  # status column
    _shot(page, "03_catalog")
    assert expected <= listed, f"not listed in the catalog: {sorted(expected - listed)}"


def _materialize_from_asset_page(dagster_ui, page, key: str, prefix: str) -> str:
    """Click Materialize on the asset's page (confirming the multi-asset dialog when the UI
    shows it), follow the run to success on its run page; returns the run id."""
    known = dagster_ui.run_ids()
    page.goto(f"{dagster_ui.base_url}/assets/{key}")
    page.get_by_text("Latest materialization").wait_for()
    _dismiss_dialogs(page)
    page.get_by_role("button", name=re.compile(r"\bMaterialize$")).click()
    confirm = page.get_by_role("button", name="Confirm")
    try:
        confirm.wait_for(timeout=10_000)
        _shot(page, f"{prefix}_materialize_confirm")
        confirm.click()
    except sync_api.TimeoutError:
        pass  # no dialog: the launch went straight through
    run_id = dagster_ui.wait_for_new_run(known)
    page.goto(f"{dagster_ui.base_url}/runs/{run_id}")
    status = dagster_ui.wait_for_run(run_id)
    assert status == "SUCCESS", dagster_ui.step_failures(run_id) or dagster_ui.log_tail()
    page.get_by_text("Success", exact=True).first.wait_for()
    _dismiss_dialogs(page)
    _shot(page, f"{prefix}_run_success")
    return run_id


def test_materialize_from_the_ui_and_read_its_metadata(dagster_ui, world, page):
    """Click Materialize on `raw/news` (one step with `raw/news_quarantine`: the UI asks to
    confirm both), follow the run to success, then check the asset page shows the row count
    that is really in DuckDB and the ingestion metadata."""
    run_id = _materialize_from_asset_page(dagster_ui, page, "raw/news", "04")
    # A run launched from the UI uses the local environment's multiprocess executor.
    log = dagster_ui.log_path.read_text(errors="replace")
    assert any(
        run_id in line and "Executing steps using multiprocess executor" in line
        for line in log.splitlines()
    ), dagster_ui.log_tail()
    with duckdb.connect(str(world["data"] / "genre.duckdb"), read_only=True) as conn:
        rows = conn.sql("select count(*) from raw.news").fetchone()[0]
    assert rows > 0
    page.goto(f"{dagster_ui.base_url}/assets/raw/news")
    page.get_by_text("Row count", exact=True).wait_for()
    _dismiss_dialogs(page)
    for key in ("rows_read", "rows_accepted", "rows_quarantined", "quarantine_share"):
        page.get_by_text(key, exact=True).first.wait_for()
    text = page.locator("body").inner_text()
    shown = re.search(r"Row count\s+([\d,]+)", text)
    assert shown, "no row count on the asset page"
    assert int(shown.group(1).replace(",", "")) == rows
    assert re.search(rf"rows_accepted\s+[^\n]*\s+{rows}\b", text), "rows_accepted != row count"
    _shot(page, "05_asset_metadata", full_page=True)


def test_drift_report_opens_from_the_ui(dagster_ui, world, settings_env, page):
    """Materialize the interaction drift report from its asset page (its upstream seeded in
    process), then follow the report link in its metadata to the Evidently page."""
    keys = {"/".join(n["assetKey"]["path"]) for n in dagster_ui.asset_nodes()}
    drift = sorted(k for k in keys if "drift" in k)
    if not drift:
        pytest.skip(
            "no drift report asset in the definitions yet (no asset key contains 'drift'); "
            "the leaderboard's path link needs the full nightly, too slow for this test"
        )
    key = sorted(drift, key=lambda k: ("interaction" not in k, k))[0]
    _materialize_upstream(key, world, settings_env)
    run_id = _materialize_from_asset_page(dagster_ui, page, key, "06")

    page.goto(f"{dagster_ui.base_url}/assets/{key}")
    page.get_by_text("Latest materialization").wait_for()
    report_url = settings_env["GENRE_REPORTS_URL"]
    link = page.locator(f"a[href^='{report_url}'][href$='{run_id[:8]}.html']").first
    link.wait_for()
    _dismiss_dialogs(page)
    _shot(page, "07_drift_asset_metadata", full_page=True)
    href = link.get_attribute("href")
    if link.get_attribute("target") == "_blank":
        with page.context.expect_page() as opened:
            link.click()
        report = opened.value
    else:
        link.click()
        report = page
    report.wait_for_load_state("load")
    assert report.url == href
    assert key.split("/")[-1] in report.title()
    # Our summary table on top, then Evidently's dashboard, rendered by its own script.
    report.get_by_text("drift_share", exact=True).first.wait_for()
    report.get_by_text("Dataset Drift", exact=True).first.wait_for()
    _shot(report, "08_drift_report")


def _materialize_upstream(key: str, world: dict, settings_env: dict) -> None:
    """Materialize what `key` reads on the UI's instance, in process: every day of impressions,
    then the raw items and the whole dbt project (a dbt subset would also run tests whose other
    parents are not built). Refuses trained-scorer upstreams (minutes of training)."""
    import dagster as dg

    from genre_dagster.automation import new_days, unmaterialized_days
    from genre_dagster.definitions import build_definitions
    from genre_dagster.settings import load_settings

    defs = build_definitions(load_settings(settings_env))
    graph = defs.resolve_asset_graph()
    target = dg.AssetKey(key.split("/"))
    upstream = dg.AssetSelection.assets(target).upstream(include_self=False)
    heavy = sorted(
        k.to_user_string()
        for k in upstream.resolve(graph)
        if graph.get(k).group_name in ("scoring", "embeddings", "enrichment")
    )
    if heavy:
        pytest.skip(f"{key} needs {', '.join(heavy)}: too slow for a UI test")
    with dg.DagsterInstance.from_config(str(world["home"])) as instance:
        new_days(defs.resources["source"], instance)
        for day in unmaterialized_days(instance):
            ingest = defs.resolve_job_def("ingest_day")
            assert ingest.execute_in_process(partition_key=day, instance=instance).success
        selection = (
            (upstream | dg.AssetSelection.groups("features"))
            .required_multi_asset_neighbors()
            .resolve(graph)
        )
        unpartitioned = [k for k in selection if not graph.get(k).is_partitioned]
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance, asset_selection=unpartitioned, raise_on_error=False
        )
        failures = [e.message for e in result.all_events if e.is_step_failure]
        assert result.success, failures


def test_evaluation_page_opens_from_the_index_and_draws_its_charts(world, report_server, page):
    """The evaluation page, written into the served reports folder as the leaderboard writes it
    (from small frames: the real leaderboard needs trained scorers, too slow for this test),
    opens from index.html, and plotly draws its four charts from the inline plotly.js: every
    request other than the report server's is refused, and none is made."""
    from test_evaluation_page import SCORERS, small_history, small_leaderboard

    from genre_dagster.evaluation.report_page import (
        CHART_TITLES,
        PAGE_NAME,
        evaluation_summary,
        write_evaluation_page,
    )
    from genre_dagster.monitoring import write_report_index
    from genre_dagster.monitoring.reports import report_paths, write_report_record

    folder = world["data"] / "reports"
    leaderboard = small_leaderboard()
    day, run_id = "2024-03-12", "0e7a1b2c3d4e"
    html_path, json_path = report_paths(folder, PAGE_NAME, day, run_id)
    write_evaluation_page(leaderboard, small_history(leaderboard), html_path, title="Evaluation")
    summary = evaluation_summary(leaderboard)
    write_report_record(json_path, PAGE_NAME, day, run_id, html_path, summary)
    write_report_index(folder)

    refused: list[str] = []

    def local_only(route) -> None:
        if route.request.url.startswith(report_server):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(f"{report_server}/index.html")
    link = page.locator(f"#{PAGE_NAME} ~ table a[href='{html_path.name}']").first
    link.click()
    page.wait_for_load_state("load")
    assert page.url == f"{report_server}/{html_path.name}"
    graphs = page.locator(".plotly-graph-div")
    sync_api.expect(graphs).to_have_count(len(CHART_TITLES))
    for i in range(len(CHART_TITLES)):
        graphs.nth(i).locator(".main-svg").first.wait_for()
        graphs.nth(i).locator(".gtitle").wait_for()
    titles = {t.strip() for t in page.locator(".gtitle").all_text_contents()}
    assert titles == set(CHART_TITLES.values())
    ticks = {t.strip() for t in page.locator(".ytick text, .xtick text").all_text_contents()}
    assert set(SCORERS) <= ticks  # every scorer drawn on an axis
    page.locator(".legendtext", has_text="cold users").first.wait_for()
    _shot(page, "09_evaluation_page", full_page=True)
    assert refused == []
