"""The terminal UI driven by Textual's Pilot at 80x24 against a real local server on a temporary store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
import time

import pytest

from modelbay.client import Client
from modelbay.metrics import InferenceEvent
from tests.onnx_models import make_mlp
from tests.pilot import until
from tests.servers import running_keyed as running

pytest.importorskip("textual")

from textual.widgets import DataTable, Input, Static

from modelbay_tui.app import ModelbayApp
from modelbay_tui.digit import DigitGrid


@pytest.fixture
def local(tmp_path, mlp_path):
    """A real server with iris v1 (production) and v2, digits v1; the app object for recording metrics."""
    from modelbay.api.app import create_app
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore

    store = LocalStore(tmp_path / "store")
    api = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache"), store=store)
    with running(api) as url, Client(url) as c:
        c.push(mlp_path, "iris", aliases=["production"])
        c.push(mlp_path, "iris")
        c.push(mlp_path, "digits", aliases=["staging"])
        yield api, url, c


def make_app(url, tmp_path, **kw) -> ModelbayApp:
    return ModelbayApp(
        url=url,
        profiles_path=tmp_path / "profiles.json",
        upload_root=kw.pop("root", tmp_path),
        health_every=kw.pop("health_every", 0.2),
        **kw,
    )


def drive(app: ModelbayApp, script, size=(80, 24)) -> None:
    async def main():
        async with app.run_test(size=size) as pilot:
            await script(pilot)
            assert app.ui_errors == [], app.ui_errors  # caught and shown, but still a bug

    asyncio.run(main())


def rows(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def notes(app) -> str:
    return " | ".join(f"{title}: {message}" for _, title, message in app.notification_log)


def test_models_screen_lists_traffic_and_filters(local, tmp_path):
    api, url, _ = local
    for i in range(20):
        api.state.metrics.record(InferenceEvent("iris", 1, 1, total_ms=10.0, error="bad_request" if i < 5 else None))

    async def script(pilot):
        app = pilot.app
        table = app.screen.query_one("#models", DataTable)
        await until(pilot, lambda: table.row_count == 2, what="two models")
        by_name = {r[0]: r for r in rows(table)}
        assert by_name["iris"][1] == "production→1" and by_name["iris"][2:4] == ["2", "2"]
        assert by_name["iris"][4] == "20" and by_name["iris"][5] == "25.0%"
        assert by_name["digits"][1] == "staging→1" and by_name["digits"][4] == "0"
        await pilot.press("slash", *"stag")
        await until(pilot, lambda: table.row_count == 1)
        assert rows(table)[0][0] == "digits"
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 2)
        await pilot.press("f")  # serving: only models with traffic in the last hour
        assert [r[0] for r in rows(table)] == ["iris"] and "filter: serving" in app.export_text()
        await pilot.press("f", "f")  # production alias
        assert [r[0] for r in rows(table)] == ["iris"]
        await pilot.press("f")
        assert table.row_count == 2
        assert "modelbay · cli" in app.export_text() and "● connected" in app.sub_title

    drive(make_app(url, tmp_path), script)


def test_promote_rollback_history_delete_by_keyboard(local, tmp_path):
    _, url, c = local

    async def script(pilot):
        app = pilot.app
        models = app.screen.query_one("#models", DataTable)
        await until(pilot, lambda: models.row_count == 2)
        await pilot.press("enter")  # iris is first (sorted by name? the server's order)
        await until(pilot, lambda: app.screen.query_one("#versions", DataTable).row_count >= 1)
        name = app.screen.model
        versions = app.screen.query_one("#versions", DataTable)
        if name != "iris":
            await pilot.press("escape", "down", "enter")
            await until(pilot, lambda: getattr(app.screen, "model", None) == "iris")
            versions = app.screen.query_one("#versions", DataTable)
            await until(pilot, lambda: versions.row_count == 2)
        assert [r[0] for r in rows(versions)] == ["2", "1"]
        assert rows(versions)[1][6] == "production" and rows(versions)[0][3] == "fp32"

        # promote v2 (top row) to production
        await pilot.press("p")
        await until(pilot, lambda: type(app.screen).__name__ == "PromptModal")
        await pilot.press("enter")
        await until(pilot, lambda: c.aliases("iris") == {"production": 2}, what="promotion on the server")
        await until(pilot, lambda: rows(app.screen.query_one("#versions", DataTable))[0][6] == "production")

        # rollback: the confirmation says from -> to before anything happens
        await pilot.press("b")
        await until(pilot, lambda: type(app.screen).__name__ == "PromptModal")
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        body = str(app.screen.query_one("#confirm-body").render())
        assert "iris:production" in body and "v2  →  v1" in body
        assert c.aliases("iris") == {"production": 2}  # nothing yet
        await pilot.press("y")
        await until(pilot, lambda: c.aliases("iris") == {"production": 1}, what="rollback on the server")

        # history: set, set, rollback, newest first
        await pilot.press("h")
        await until(pilot, lambda: type(app.screen).__name__ == "PromptModal")
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "HistoryModal")
        hist = rows(app.screen.query_one("#history", DataTable))
        assert [h[1] for h in hist][:1] == ["rollback"] and len(hist) == 3
        assert (hist[0][2], hist[0][3]) == ("2", "1")
        await pilot.press("escape")

        # deleting the aliased v1 is refused in the UI; the unaliased v2 goes after a confirmation
        versions = app.screen.query_one("#versions", DataTable)
        await until(pilot, lambda: rows(versions)[1][6] == "production")
        await pilot.press("down", "d")
        await until(pilot, lambda: "aliased by production" in notes(app))
        assert type(app.screen).__name__ == "ModelScreen"
        await pilot.press("up", "d")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        await pilot.press("y")
        await until(pilot, lambda: [m.version for m in c.versions("iris")] == [1], what="delete on the server")
        await until(pilot, lambda: versions.row_count == 1)

    drive(make_app(url, tmp_path), script)


def test_repeated_rollback_confirmation_shows_what_the_server_will_do(local, tmp_path):
    _, url, c = local
    c.set_alias("iris", "production", 2)
    c.rollback("iris", "production")  # 2 -> 1; a second rollback walks further back, to nothing

    async def script(pilot):
        app = pilot.app
        await until(pilot, lambda: app.screen.query_one("#models", DataTable).row_count == 2)
        app.open_model("iris")
        await until(pilot, lambda: app.screen.query_one("#versions", DataTable).row_count == 2)
        c.set_alias("iris", "production", 2)  # 1 -> 2 again: now the rollback restores 1
        await pilot.press("b", "enter")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        assert "v2  →  v1" in str(app.screen.query_one("#confirm-body").render())
        await pilot.press("y")
        await until(pilot, lambda: c.aliases("iris") == {"production": 1})
        await pilot.press("b", "enter")  # the first alias set has no earlier version
        await until(pilot, lambda: "no earlier version" in notes(app))
        assert type(app.screen).__name__ == "ModelScreen"

    drive(make_app(url, tmp_path), script)


def test_metrics_screen_charts_per_model_and_version(local, tmp_path):
    api, url, _ = local
    now = time.time()
    for i in range(30):
        api.state.metrics.record(InferenceEvent("iris", 1, 1, total_ms=10.0 + i, timestamp=now - 120))
    for i in range(10):
        api.state.metrics.record(
            InferenceEvent("iris", 2, 1, total_ms=80.0, error="timeout" if i < 2 else None, timestamp=now)
        )

    async def script(pilot):
        app = pilot.app
        await until(pilot, lambda: app.screen.query_one("#models", DataTable).row_count == 2)
        app.open_metrics("iris")
        await until(pilot, lambda: type(app.screen).__name__ == "MetricsScreen")
        screen = app.screen
        await until(
            pilot, lambda: screen.query_one("#metrics-table", DataTable).row_count == 3, what="all + two versions"
        )
        table = screen.query_one("#metrics-table", DataTable)
        r = {row[0]: row for row in rows(table)}
        assert r["all"][1] == "40" and r["v1"][1] == "30" and r["v2"][2] == "20.0%"
        assert r["v2"][3] == "80.8ms" or r["v2"][3].startswith("8")
        text = app.export_text()
        assert "requests/min" in text and "latency ms" in text and "error rate %" in text
        assert "p95" in text  # whole-model latency has p50/p95/p99 lines
        await pilot.press("v")
        assert screen.by_version and "per version" in app.export_text()
        assert "v1" in app.export_text() and "v2" in app.export_text()
        assert "timeout 2" in str(screen.query_one("#metrics-phases", Static).render())
        await pilot.press("a")
        assert "feedback accuracy %" in app.export_text()
        await pilot.press("w")
        await until(pilot, lambda: screen.data and screen.data.window == "1h", what="window switch")
        assert screen.data.step == 60 and len(screen.data.overall.timestamps) == 60

    drive(make_app(url, tmp_path), script)


def test_upload_an_onnx_file_from_the_tree(local, tmp_path):
    _, url, c = local
    root = tmp_path / "models"
    root.mkdir()
    make_mlp(root / "flower.onnx", seed=3)
    (root / "notes.txt").write_text("not a model")

    async def script(pilot):
        app = pilot.app
        await pilot.press("u")
        await until(pilot, lambda: app.screen.query_one("#up-tree"))
        tree = app.screen.query_one("#up-tree")
        await until(pilot, lambda: len(tree.root.children) == 1, what="tree listing (notes.txt filtered out)")
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.screen.query_one("#up-name", Input).value == "flower")
        await pilot.press("tab", *"production")
        await pilot.press("ctrl+u")
        result = app.screen.query_one("#up-result", Static)
        await until(pilot, lambda: "registered" in str(result.render()), what="upload result")
        assert "flower" in str(result.render()) and "v1" in str(result.render())
        assert c.aliases("flower") == {"production": 1}
        assert "✓ upload" in app.export_text() and "- quantize" in app.export_text()

    drive(make_app(url, tmp_path, root=root), script)


def test_upload_refuses_clearly_what_it_cannot_do(local, tmp_path, monkeypatch):
    _, url, c = local
    root = tmp_path / "models"
    root.mkdir()
    (root / "net.pt2").write_bytes(b"not really")

    def no_torch(*args, **kw):  # what a slim install (no convert extra) meets when it converts
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr("modelbay.convert.pipeline.load_source", no_torch)

    async def script(pilot):
        app = pilot.app
        await pilot.press("u")
        await until(pilot, lambda: app.screen.query_one("#up-tree"))
        await pilot.press("ctrl+u")
        await until(pilot, lambda: "pick a model file" in notes(app))
        tree = app.screen.query_one("#up-tree")
        await until(pilot, lambda: len(tree.root.children) == 1)
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.screen.query_one("#up-name", Input).value == "net")
        await pilot.press("ctrl+u")
        await until(pilot, lambda: "needs the convert extra" in notes(app))
        await until(pilot, lambda: "✗ convert" in str(app.screen.query_one("#up-stages", Static).render()))
        assert "needs the convert extra" in str(app.screen.query_one("#up-result", Static).render())
        assert "net" not in [m.name for m in c.models()]

    drive(make_app(url, tmp_path, root=root), script)


def test_playground_json_text_and_digit_grid(local, tmp_path, mlp_path):
    import numpy as np

    from tests.inference_models import digits_metadata, image_classifier, spam_metadata, string_classifier

    _, url, c = local
    img, weights = image_classifier(tmp_path / "digits8.onnx")
    c.push(img, "pixels", digits_metadata(), aliases=["production"])
    spam, _ = string_classifier(tmp_path / "spam.onnx", ["free", "money", "meeting", "lunch", "winner"])
    c.push(spam, "spam", spam_metadata())

    c.push(mlp_path, "ranked", aliases=["canary"])
    c.push(mlp_path, "ranked")  # no production: the server serves the latest, v2, not the canary

    async def script(pilot):
        app = pilot.app
        await until(pilot, lambda: app.screen.query_one("#models", DataTable).row_count == 5)
        # a bare name opens on what the server serves for it
        app.open_playground("ranked")
        await until(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen" and app.screen.manifest)
        assert app.screen.ref == "2" and app.screen.manifest.version == 2
        await pilot.press("escape")
        app.open_playground("iris")
        await until(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen" and app.screen.manifest)
        assert app.screen.ref == "production" and app.screen.manifest.version == 1
        await pilot.press("escape")
        # raw model: a JSON example drawn from the signature, sent to v2 of iris
        app.open_playground("iris", "2")
        await until(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen" and app.screen.manifest)
        assert app.screen.kind == "json" and app.screen.ref == "2"
        await pilot.press("ctrl+s")
        latency = app.screen.query_one("#pg-latency", Static)
        await until(pilot, lambda: "round trip" in str(latency.render()), what="iris prediction")
        assert {"round_trip_ms", "inference", "total"} <= set(app.screen.last_timing)
        assert '"predictions"' in app.export_text()
        await pilot.press("escape")

        # a digit drawn with the keyboard on the 8x8 grid: a vertical bar in column 3
        app.open_playground("pixels")
        await until(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen" and app.screen.kind == "grid")
        await until(pilot, lambda: app.screen.query_one("#pg-grid", DigitGrid).has_focus)
        await pilot.press("right", "right", "right")
        for _ in range(6):
            await pilot.press("down", "space")
        grid = app.screen.query_one("#pg-grid", DigitGrid)
        drawn = np.array(grid.values(), dtype=np.float32)
        assert drawn.sum() == 6 * 16 and drawn[1:7, 3].tolist() == [16.0] * 6
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen.last_timing, what="digit prediction")
        want = str(int(np.argmax(drawn.reshape(1, -1) @ weights)))
        assert f'"label": "{want}"' in str(app.screen.query_one("#pg-result", Static).render())
        await pilot.press("escape")

        # text for a classifier
        app.open_playground("spam")
        await until(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen" and app.screen.kind == "text")
        await pilot.press(*"free money", "enter")
        await until(pilot, lambda: app.screen.last_timing, what="text prediction")
        result = str(app.screen.query_one("#pg-result", Static).render())
        assert '"label"' in result and ('"spam"' in result or '"ham"' in result)

        # a bad request shows the server's error, the app carries on
        app.screen.query_one("#pg-text", Input).value = ""
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "type some text first" in notes(app))

    drive(make_app(url, tmp_path), script)


def test_connections_are_saved_and_switched(local, tmp_path, mlp_path):
    _, url, _ = local
    from modelbay.api.app import create_app
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore

    other_store = LocalStore(tmp_path / "other")
    other = create_app(Settings(store_url=other_store.url, cache_dir=tmp_path / "c2"), store=other_store)
    from modelbay.auth import KeyStore

    other_key = KeyStore(other_store).create("default", ("invoke", "manage"), name="tui-profile")[1]
    with running(other) as other_url, Client(other_url) as oc:
        oc.push(mlp_path, "elsewhere")

        async def script(pilot):
            app = pilot.app
            await until(pilot, lambda: app.screen.query_one("#models", DataTable).row_count == 2)
            await pilot.press("c")
            await until(pilot, lambda: type(app.screen).__name__ == "ConnectScreen")
            for field, text in (("#cx-name", "staging"), ("#cx-url", other_url), ("#cx-key", other_key)):
                app.screen.query_one(field, Input).value = text
            await pilot.click("#cx-save")
            await until(pilot, lambda: app.profile.name == "staging")
            table = app.screen.query_one("#models", DataTable)
            await until(pilot, lambda: rows(table) and rows(table)[0][0] == "elsewhere", what="the other server")
            assert app.client.api_key == other_key and other_url in app.sub_title

        drive(make_app(url, tmp_path), script)
    saved = json.loads((tmp_path / "profiles.json").read_text())
    assert saved["current"] == "staging" and saved["profiles"]["staging"]["url"] == other_url
    assert stat.S_IMODE((tmp_path / "profiles.json").stat().st_mode) == 0o600


def test_server_going_away_is_shown_and_the_ui_reconnects(tmp_path, mlp_path):
    from modelbay.api.app import create_app
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore
    from tests import servers

    store = LocalStore(tmp_path / "store")

    def api():
        return create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache"), store=store)

    with contextlib.ExitStack() as up:
        url = up.enter_context(running(api()))  # a key minted and saved for the URL
        with Client(url) as c:
            c.push(mlp_path, "iris")

        async def script(pilot):
            app = pilot.app
            table = app.screen.query_one("#models", DataTable)
            await until(pilot, lambda: table.row_count == 1)
            await asyncio.to_thread(up.close)  # the server stops
            await until(pilot, lambda: not app.online, what="offline state")
            assert "unreachable" in app.sub_title and "disconnected: lost" in notes(app)
            await pilot.press("enter")  # the UI keeps working while the server is gone
            await pilot.press("escape")
            # back on the same URL, with the same store (and so the same key)
            port = int(url.rsplit(":", 1)[1])
            await asyncio.to_thread(up.enter_context, servers.running(api(), port=port))
            await until(pilot, lambda: app.online, what="reconnection")
            assert "● connected" in app.sub_title
            await until(pilot, lambda: table.row_count == 1)

        drive(make_app(url, tmp_path), script)


def test_help_palette_and_themes(local, tmp_path):
    _, url, _ = local

    async def script(pilot):
        app = pilot.app
        await pilot.press("question_mark")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        assert "promote the selected version" in app.export_text()
        await pilot.press("escape")
        dark = app.current_theme.dark
        await pilot.press("ctrl+t")
        assert app.current_theme.dark is not dark
        await pilot.press("ctrl+p")
        await until(pilot, lambda: "CommandPalette" in type(app.screen).__name__)
        await pilot.press(*"upload")
        await until(pilot, lambda: "Upload a model" in app.export_text())
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "UploadScreen")

    drive(make_app(url, tmp_path, theme_name="textual-light"), script)


@pytest.mark.slow
def test_upload_state_dict_through_the_convert_pipeline(local, tmp_path):
    """Runs where modelbay.convert is installed (the convert extra): factory + state_dict, int8, gate numbers."""
    pytest.importorskip("modelbay.convert.pipeline")
    import numpy as np
    from textual.widgets import Select

    from modelbay.convert.data import LABELS_KEY
    from modelbay.convert.examples import mlp as example

    _, url, c = local
    root = tmp_path / "models"
    root.mkdir()
    _, xte, _, yte = example.train(root / "mlp_state.pt")
    np.savez(tmp_path / "eval.npz", x=xte, **{LABELS_KEY: yte})

    async def script(pilot):
        app = pilot.app
        await pilot.press("u")
        await until(pilot, lambda: len(app.screen.query_one("#up-tree").root.children) == 1)
        await pilot.press("down", "enter")
        s = app.screen
        await until(pilot, lambda: s.query_one("#up-name", Input).value == "mlp_state")
        s.query_one("#up-quant", Select).value = "dynamic"
        s.query_one("#up-eval", Input).value = str(tmp_path / "eval.npz")
        s.query_one("#up-factory", Input).value = example.FACTORY
        s.query_one("#up-spec", Input).value = "x:float32:[batch,100]"
        await pilot.press("ctrl+u")
        result = s.query_one("#up-result", Static)
        await until(pilot, lambda: "registered" in str(result.render()), timeout=120, what="conversion")
        assert "gate:" in str(result.render()) and "int8" in str(result.render())
        m = c.versions("mlp_state")[-1]
        assert m.quantization.method in ("dynamic", "mixed") and m.metrics["gate"]["passed"] is True

    drive(make_app(url, tmp_path, root=root), script)


# ------------------------------------------------------------------ frictions a new user met (issue 10)
def test_upload_by_path_a_pickle_with_task_and_labels(local, tmp_path):
    """The path entry reaches files outside the tree's folder and moves the tree; .pkl files show; task and
    labels make a classifier that answers labels."""
    pytest.importorskip("skl2onnx")
    import pickle

    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from textual.widgets import Select

    from modelbay_tui.screens.upload import SPEC_PLACEHOLDER

    _, url, c = local
    root = tmp_path / "tree"
    root.mkdir()
    (root / "empty.txt").write_text("not a model")
    elsewhere = tmp_path / "elsewhere [v2]"
    elsewhere.mkdir()
    iris = load_iris()
    clf = LogisticRegression(max_iter=500).fit(iris.data.astype(np.float32), iris.target)
    with open(elsewhere / "flowers.pkl", "wb") as f:
        pickle.dump(clf, f)

    async def script(pilot):
        app = pilot.app
        await pilot.press("u")
        s = app.screen
        await until(pilot, lambda: s.query_one("#up-tree"))
        # the placeholder is one the program accepts
        from modelbay.convert.spec import parse_input_spec

        assert s.query_one("#up-spec", Input).placeholder == SPEC_PLACEHOLDER
        assert parse_input_spec(SPEC_PLACEHOLDER)[0].shape == ["batch", 4]
        # a folder: the tree moves there, and the pickle is listed
        s.query_one("#up-path", Input).value = str(elsewhere)
        s.query_one("#up-path", Input).focus()
        await pilot.press("enter")
        tree = s.query_one("#up-tree")
        await until(pilot, lambda: [n.label.plain for n in tree.root.children] == ["flowers.pkl"], what="the pickle")
        # a file: chosen, named after it; brackets in its folder's name are not markup
        s.query_one("#up-path", Input).value = str(elsewhere / "flowers.pkl")
        s.query_one("#up-path", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: s.query_one("#up-name", Input).value == "flowers")
        assert "file: flowers.pkl" in app.export_text()
        s.query_one("#up-task", Select).value = "classifier"
        s.query_one("#up-labels", Input).value = "setosa, versicolor, virginica"
        await pilot.press("ctrl+u")
        result = s.query_one("#up-result", Static)
        await until(pilot, lambda: "registered" in str(result.render()), timeout=120, what="the upload")

    drive(make_app(url, tmp_path, root=root), script)
    m = c.version("flowers", 1)
    assert m.task == "classifier" and m.labels == ["setosa", "versicolor", "virginica"]
    out = c.predict("flowers", None, iris.data[:3].tolist()).predictions
    assert [p["label"] for p in out] == [["setosa", "versicolor", "virginica"][i] for i in clf.predict(iris.data[:3])]


def test_upload_refuses_missing_data_paths_by_name(local, tmp_path):
    _, url, _ = local
    root = tmp_path / "models"
    root.mkdir()
    make_mlp(root / "m.onnx")

    async def script(pilot):
        app = pilot.app
        await pilot.press("u")
        s = app.screen
        await until(pilot, lambda: len(s.query_one("#up-tree").root.children) == 1)
        await pilot.press("down", "enter")
        await until(pilot, lambda: s.query_one("#up-name", Input).value == "m")
        s.query_one("#up-calib", Input).value = str(tmp_path / "calib[1].npz")
        await pilot.press("ctrl+u")
        await until(pilot, lambda: "no such calibration data" in notes(app))
        assert f"{tmp_path}/calib[1].npz" in notes(app)  # the path as typed: brackets survive

    drive(make_app(url, tmp_path, root=root), script)


def test_a_console_session_uploads_only_from_its_own_folder(local, tmp_path):
    """A browser session (``modelbay console``) may push files in its folder, never others of the machine."""
    _, url, c = local
    root = tmp_path / "session"
    root.mkdir()
    make_mlp(root / "mine.onnx")
    elsewhere = tmp_path / "operator"
    elsewhere.mkdir()
    make_mlp(elsewhere / "secret.onnx")
    (root / "link.onnx").symlink_to(elsewhere / "secret.onnx")

    async def script(pilot):
        app = pilot.app
        await pilot.press("u")
        s = app.screen
        await until(pilot, lambda: len(s.query_one("#up-tree").root.children) == 2)
        for typed in (str(elsewhere / "secret.onnx"), str(elsewhere), "link.onnx", "../operator/secret.onnx"):
            s.query_one("#up-path", Input).value = typed
            s.query_one("#up-path", Input).focus()
            await pilot.press("enter")
            await until(pilot, lambda: notes(app).count("only files in") >= 1, what=f"{typed} refused")
            app.notification_log.clear()
            assert s.file is None
        s.query_one("#up-path", Input).value = "mine.onnx"  # relative to the session's folder
        s.query_one("#up-path", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: s.query_one("#up-name", Input).value == "mine")
        s.query_one("#up-eval", Input).value = str(elsewhere / "secret.onnx")
        await pilot.press("ctrl+u")
        await until(pilot, lambda: "only files in" in notes(app), what="evaluation data from elsewhere refused")
        assert "mine" not in [m.name for m in c.models()]

    drive(make_app(url, tmp_path, root=root, confine_uploads=True), script)


def test_lists_refresh_on_coming_back_to_a_screen(local, tmp_path, mlp_path, monkeypatch):
    from modelbay_tui.screens.models import ModelsScreen

    monkeypatch.setattr(ModelsScreen, "AUTO_REFRESH", 3600.0)  # so only coming back can refresh it
    _, url, c = local

    async def script(pilot):
        app = pilot.app
        table = app.screen.query_one("#models", DataTable)
        await until(pilot, lambda: table.row_count == 2)
        await pilot.press("u")
        await until(pilot, lambda: type(app.screen).__name__ == "UploadScreen")
        c.push(mlp_path, "arrived")  # e.g. uploaded from the upload screen, or by a colleague
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 3, what="the new model after coming back")
        assert "Open arrived" in [cmd.title for cmd in app.get_system_commands(app.screen)]  # and in the palette

    drive(make_app(url, tmp_path), script)


def test_lists_refresh_on_a_timer(local, tmp_path, mlp_path, monkeypatch):
    from modelbay_tui.screens.models import ModelsScreen

    monkeypatch.setattr(ModelsScreen, "AUTO_REFRESH", 0.3)
    api, url, c = local

    async def script(pilot):
        app = pilot.app
        table = app.screen.query_one("#models", DataTable)
        await until(pilot, lambda: table.row_count == 2)
        for _ in range(30):
            api.state.metrics.record(InferenceEvent("digits", 1, 1, total_ms=4.0))
        c.push(mlp_path, "late")
        await until(pilot, lambda: table.row_count == 3, what="the new model without pressing r")
        await until(pilot, lambda: {r[0]: r[4] for r in rows(table)}["digits"] == "30", what="traffic")

    drive(make_app(url, tmp_path), script)


def test_playground_examples_empty_grid_polarity_and_embeddings(local, tmp_path):
    from modelbay.manifest import (
        ClassifierPostprocessing,
        EmbedderPostprocessing,
        ImagePreprocessing,
        StringPreprocessing,
        TextPreprocessing,
        VersionMetadata,
    )
    from tests.inference_models import image_classifier, make_tokenizer, string_classifier, text_embedder

    _, url, c = local
    img, _ = image_classifier(tmp_path / "digits8.onnx")
    image = ImagePreprocessing(input="pixels", height=8, width=8, channels=1, layout="flat", scale=1.0, max_value=16.0)
    scores = ClassifierPostprocessing(scores="probabilities", top_k=3)
    digits = [str(i) for i in range(10)]
    c.push(img, "pixels", VersionMetadata(task="classifier", labels=digits, preprocessing=image, postprocessing=scores))
    spam, _ = string_classifier(tmp_path / "spam.onnx", ["free", "money", "meeting", "lunch", "winner"])
    strings = StringPreprocessing(input="text")
    c.push(
        spam,
        "spam",
        VersionMetadata(
            task="classifier",
            labels=["[ham]", "spam"],
            preprocessing=strings,
            postprocessing=ClassifierPostprocessing(scores="probabilities"),
        ),
    )
    tok = make_tokenizer(tmp_path / "tokenizer.json")
    emb, _, _ = text_embedder(tmp_path / "emb.onnx", vocab_size=64, hidden=48)
    embedder = VersionMetadata(
        task="embedder",
        preprocessing=TextPreprocessing(),
        postprocessing=EmbedderPostprocessing(output="last_hidden_state"),
    )
    c.push(emb, "emb", embedder, side_files={"tokenizer.json": tok})

    async def script(pilot):
        app = pilot.app
        await until(pilot, lambda: app.screen.query_one("#models", DataTable).row_count == 5)
        app.open_playground("pixels")
        await until(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen" and app.screen.kind == "grid")
        screen = app.screen
        await until(pilot, lambda: "bright ink on black" in app.export_text(), what="the polarity the model wants")
        await pilot.press("ctrl+s")  # an empty grid is not sent
        await until(pilot, lambda: "draw a digit first" in notes(app))
        assert not screen.last_timing
        await pilot.press("ctrl+e")  # an example digit
        grid = screen.query_one("#pg-grid", DigitGrid)
        assert not grid.empty and sum(map(sum, grid.values())) > 10 * 16
        await pilot.press("ctrl+s")
        await until(pilot, lambda: screen.last_timing, what="the example's prediction")
        await pilot.press("escape")

        app.open_playground("spam")
        await until(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen" and app.screen.kind == "text")
        await until(pilot, lambda: "[ham], spam" in app.export_text(), what="the labels (text, not markup)")
        await pilot.press("ctrl+e")
        assert app.screen.query_one("#pg-text", Input).value  # an example sentence
        await pilot.press("escape")

        app.open_playground("emb")
        await until(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen" and app.screen.kind == "text")
        await pilot.press("ctrl+e", "enter")
        await until(pilot, lambda: app.screen.last_timing, what="the embedding")
        shown = str(app.screen.query_one("#pg-result", Static).render())
        assert "48 dims" in shown and "norm 1.000" in shown and shown.count("\n") < 6  # summarised, not 48 lines

    drive(make_app(url, tmp_path), script)


def test_upload_a_hugging_face_folder_by_path(local, tmp_path):
    """A save_pretrained folder typed in the path entry is the model itself; the task select goes to the
    folder's task; the pushed tagger answers spans."""
    pytest.importorskip("transformers")
    from textual.widgets import Select

    from tests import hf_folders

    _, url, c = local
    folder = hf_folders.text_folder(tmp_path / "ner-model", head="token")

    async def script(pilot):
        app = pilot.app
        await pilot.press("u")
        s = app.screen
        await until(pilot, lambda: s.query_one("#up-tree"))
        s.query_one("#up-path", Input).value = str(folder)
        s.query_one("#up-path", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: s.query_one("#up-name", Input).value == "ner-model", what="the folder chosen")
        assert "Hugging Face folder" in app.export_text()
        s.query_one("#up-task", Select).value = "tagger"
        s.query_one("#up-quant", Select).value = "none"
        await pilot.press("ctrl+u")
        result = s.query_one("#up-result", Static)
        await until(pilot, lambda: "registered" in str(result.render()), timeout=300, what="the upload")

    drive(make_app(url, tmp_path, root=tmp_path), script)
    m = c.version("ner-model", 1)
    assert m.task == "tagger" and m.labels == hf_folders.NER_LABELS and "tokenizer.json" in m.files
    (spans,) = c.predict("ner-model", None, ["The cat slept on the warm windowsill"]).predictions
    assert all({"entity", "score", "start", "end", "word"} <= set(s) for s in spans)
