"""The model fetcher (daa_tf.models.fetch and its command challenges.fetch_model), end to end
against an HTTP server on 127.0.0.1 or a fake opener (no other network): verification (pinned git
blob ids, digests recorded at the first download), safe unpacking, failures that leave nothing."""
import functools
import hashlib
import http.server
import io
import json
import os
import socket
import shutil
import subprocess
import sys
import stat
import threading
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from daa_tf.models import fetch
from daa_tf.models.fetch import FetchError
from tests.helpers import REPO_ROOT

CKPT_FILES = {"checkpoint": b'model_checkpoint_path: "checkpoint-1"\n',
              "checkpoint-1.index": b"fake index", "checkpoint-1.data-00000-of-00001": b"\0" * 64}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback requests must not go through a proxy configured in the environment."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in [v for v in os.environ if v.startswith("DAA_TF_MODEL_URL_")]:
        monkeypatch.delenv(var)


@pytest.fixture
def server(tmp_path):
    """Serves ``tmp_path/www`` on 127.0.0.1 (a free port); yields the base URL and the folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def make_zip(path: Path, folder: str = "adv_trained", files=None, links=()) -> str:
    """Zip ``files`` (default: a fake checkpoint) under ``folder/``, and symbolic links ``(name,
    target)``; returns the SHA256."""
    with zipfile.ZipFile(path, "w") as z:
        for name, content in (CKPT_FILES if files is None else files).items():
            z.writestr(f"{folder}/{name}" if folder else name, content)
        for name, target in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def quiet(_: str) -> None:
    pass


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/adv_trained.zip"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "no_proxy": "127.0.0.1,localhost",
           "NO_PROXY": "127.0.0.1,localhost"}
    return subprocess.run([sys.executable, "-m", "challenges.fetch_model", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def test_fetch_function_end_to_end_records_the_digest_and_reuses(server, tmp_path):
    base, www = server
    digest = make_zip(www / "adv_trained.zip")
    dest = tmp_path / "models"
    logs = []
    out = fetch.fetch("cifar10", "adv_trained", dest, url=f"{base}/adv_trained.zip",
                      log=logs.append)
    assert out == dest / "adv_trained"
    for name, content in CKPT_FILES.items():
        assert (out / name).read_bytes() == content
    info = json.loads((out / fetch.INFO_FILE).read_text())
    assert info["sha256"] == digest and info["verified"] == ""
    record = json.loads((dest / fetch.RECORD_FILE).read_text())
    assert record["cifar10/adv_trained"]["sha256"] == digest
    assert any("no published digest" in line and digest in line and "recorded" in line
               for line in logs)
    assert sorted(p.name for p in dest.iterdir()) == ["adv_trained", fetch.RECORD_FILE]
    # already there: reused without any download (the URL is unreachable now)
    assert fetch.fetch("cifar10", "adv_trained", dest, url=closed_port_url(),
                       log=logs.append) == out
    assert "reusing" in logs[-1]


def test_later_downloads_are_checked_against_the_first(server, tmp_path):
    base, www = server
    first = make_zip(www / "natural.zip", folder="natural")
    dest, logs = tmp_path / "models", []
    fetch.fetch("cifar10", "natural", dest, url=f"{base}/natural.zip", log=logs.append)
    shutil.rmtree(dest / "natural")
    fetch.fetch("cifar10", "natural", dest, url=f"{base}/natural.zip", log=logs.append)
    assert any("equals the first download's" in line and first in line for line in logs)
    shutil.rmtree(dest / "natural")
    changed = make_zip(www / "natural.zip", folder="natural",
                       files={**CKPT_FILES, "checkpoint-1.index": b"another index"})
    with pytest.raises(FetchError, match=f"SHA256 mismatch for cifar10/natural .*expected "
                                         f"{first} .*recorded at the first download.*got "
                                         f"{changed}.*deleted"):
        fetch.fetch("cifar10", "natural", dest, url=f"{base}/natural.zip", log=quiet)
    assert sorted(p.name for p in dest.iterdir()) == [fetch.RECORD_FILE]  # download deleted


def test_madrylab_mnist_zips_are_pinned_by_their_git_blob_ids():
    assert fetch.PINNED == {("mnist", "adv_trained"): "5522769558a570818f3e79bf465dd7f094f5783a",
                            ("mnist", "natural"): "464dce662b07446b47bcef3f93245afebdb4e197",
                            ("mnist", "secret"): "d8c1cbea2b5ddd98fbe8b870b00865c60d51f316"}


def test_git_blob_id_is_what_git_computes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3000) + b"\0blob")
    assert fetch.file_digests(path)["git_blob"] == git_blob(path)
    git = shutil.which("git")
    if git:
        done = subprocess.run([git, "hash-object", str(path)], capture_output=True, text=True)
        assert done.stdout.strip() == git_blob(path)


def test_a_pinned_zip_with_other_bytes_is_deleted(server, tmp_path):
    base, www = server
    make_zip(www / "adv_trained.zip")
    served = git_blob(www / "adv_trained.zip")
    dest = tmp_path / "models"
    with pytest.raises(FetchError) as err:
        fetch.fetch("mnist", "adv_trained", dest, url=f"{base}/adv_trained.zip", log=quiet)
    message = str(err.value)
    assert "git blob id mismatch for mnist/adv_trained" in message
    assert f"{base}/adv_trained.zip" in message
    assert "expected 5522769558a570818f3e79bf465dd7f094f5783a" in message
    assert f"got {served}" in message and "deleted" in message
    assert list(dest.iterdir()) == []  # nothing kept, nothing recorded


def test_a_pinned_zip_with_the_published_bytes_is_verified(server, tmp_path, monkeypatch):
    base, www = server
    make_zip(www / "natural.zip", folder="natural")
    monkeypatch.setitem(fetch.PINNED, ("mnist", "natural"), git_blob(www / "natural.zip"))
    logs = []
    out = fetch.fetch("mnist", "natural", tmp_path / "m", url=f"{base}/natural.zip",
                      log=logs.append)
    assert any("verified mnist/natural" in line and "git blob id" in line for line in logs)
    assert "git blob id" in json.loads((out / fetch.INFO_FILE).read_text())["verified"]
    assert not (tmp_path / "m" / fetch.RECORD_FILE).exists()


class FakeOpener:
    """``urllib.request.urlopen`` serving ``files`` (URL -> bytes) from memory."""

    def __init__(self, files):
        self.files, self.opened = files, []

    def __call__(self, url, timeout=None):
        self.opened.append(url)
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return io.BytesIO(self.files[url])


def test_fetch_model_downloads_the_release_once_into_the_cache(tmp_path, monkeypatch):
    make_zip(tmp_path / "secret.zip", folder="secret")
    url = fetch.RELEASES[("cifar10", "secret")].url
    opener = FakeOpener({url: (tmp_path / "secret.zip").read_bytes()})
    monkeypatch.setattr(urllib.request, "urlopen", opener)
    monkeypatch.setenv("DAA_TF_CACHE", str(tmp_path / "cache"))
    out = fetch.fetch_model("cifar10", "secret", log=quiet)
    assert out == tmp_path / "cache" / "cifar10" / "secret" and fetch.has_checkpoint(out)
    assert fetch.fetch_model("cifar10", "secret", log=quiet) == out
    assert opener.opened == [url]  # the second call reused the cache
    from daa_tf.models import fetch_model
    assert fetch_model is fetch.fetch_model  # the README's import


def test_fetch_model_refuses_a_forged_mnist_release(tmp_path, monkeypatch):
    make_zip(tmp_path / "adv_trained.zip")
    url = fetch.RELEASES[("mnist", "adv_trained")].url
    assert url == "https://github.com/MadryLab/mnist_challenge_models/raw/master/adv_trained.zip"
    monkeypatch.setattr(urllib.request, "urlopen",
                        FakeOpener({url: (tmp_path / "adv_trained.zip").read_bytes()}))
    with pytest.raises(FetchError, match="git blob id mismatch"):
        fetch.fetch_model("mnist", cache_dir=tmp_path / "cache", log=quiet)
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_sha_mismatch_leaves_nothing(server, tmp_path):
    base, www = server
    make_zip(www / "adv_trained.zip")
    dest = tmp_path / "models"
    with pytest.raises(FetchError, match="SHA256 mismatch.*expected 0{64} .*the sha256 argument"):
        fetch.fetch("cifar10", "adv_trained", dest, url=f"{base}/adv_trained.zip",
                    sha256="0" * 64, log=quiet)
    assert list(dest.iterdir()) == []


def test_given_digest_nested_folder_and_env_url(server, tmp_path, monkeypatch):
    base, www = server
    digest = make_zip(www / "s.zip", folder="models/secret")
    monkeypatch.setenv("DAA_TF_MODEL_URL_CIFAR10_SECRET", f"{base}/s.zip")
    assert fetch.model_url("cifar10", "secret") == f"{base}/s.zip"
    out = fetch.fetch("cifar10", "secret", tmp_path / "d", sha256=digest.upper(), log=quiet)
    assert (out / "checkpoint-1.index").is_file()
    assert json.loads((out / fetch.INFO_FILE).read_text())["sha256"] == digest


@pytest.mark.parametrize("files, folder, links, message", [
    ({"readme.txt": b"no checkpoint here"}, "x", (), "holds no TF checkpoint"),
    ({"../evil/checkpoint": b"x"}, "", (), "refusing zip member '../evil/checkpoint'"),
    ({"/abs/checkpoint": b"x"}, "", (), "refusing zip member '/abs/checkpoint'"),
    ({"c:/evil/checkpoint": b"x"}, "", (), "refusing zip member 'c:/evil/checkpoint'"),
    (None, "natural", [("natural/link.index", "/etc/passwd")],
     "refusing zip member 'natural/link.index' .links and special files"),
])
def test_bad_archives_leave_nothing(server, tmp_path, files, folder, links, message):
    base, www = server
    make_zip(www / "bad.zip", folder=folder, files=files, links=links)
    dest = tmp_path / "models"
    with pytest.raises(FetchError, match=message):
        fetch.fetch("cifar10", "natural", dest, url=f"{base}/bad.zip", log=quiet)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_not_a_zip(server, tmp_path):
    base, www = server
    (www / "page.zip").write_text("<html>not found</html>")
    with pytest.raises(FetchError, match="not a zip archive"):
        fetch.fetch("cifar10", "natural", tmp_path / "m", url=f"{base}/page.zip", log=quiet)
    assert list((tmp_path / "m").iterdir()) == []


def test_404_and_closed_port(server, tmp_path):
    base, _ = server
    dest = tmp_path / "models"
    with pytest.raises(FetchError, match="HTTP 404") as err:
        fetch.fetch("mnist", "natural", dest, url=f"{base}/missing.zip", log=quiet)
    assert "place the checkpoint folder" in str(err.value)
    with pytest.raises(FetchError, match="Offline\\?.*DAA_TF_MODEL_URL_MNIST_NATURAL"):
        fetch.fetch("mnist", "natural", dest, url=closed_port_url(), timeout=5, log=quiet)
    assert list(dest.iterdir()) == []


def test_existing_folder_without_checkpoint_is_not_overwritten(tmp_path):
    (tmp_path / "natural").mkdir()
    (tmp_path / "natural" / "notes.txt").write_text("mine")
    with pytest.raises(FetchError, match="holds no checkpoint"):
        fetch.fetch("mnist", "natural", tmp_path, url=closed_port_url(), log=quiet)


def test_names_validated():
    with pytest.raises(ValueError, match="unknown challenge"):
        fetch.fetch("svhn", "natural")
    with pytest.raises(ValueError, match="unknown ImageNet model"):
        fetch.fetch("imagenet", "natural")
    with pytest.raises(ValueError, match="unknown model"):
        fetch.model_url("mnist", "l2")
    assert all(r.url.startswith("https://") for (c, _), r in fetch.RELEASES.items()
               if c != fetch.IMAGENET)


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DAA_TF_CACHE", str(tmp_path / "cache"))
    assert fetch.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DAA_TF_CACHE")
    assert fetch.default_cache_dir() == Path.home() / ".cache" / "daa_tf"


def test_the_command_line_module_is_light():
    done = subprocess.run([sys.executable, "-c", "import sys, challenges.fetch_model, "
                           "daa_tf.models; print('tensorflow' in sys.modules)"],
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_cli_end_to_end(server, tmp_path):
    base, www = server
    digest = make_zip(www / "adv_trained.zip", folder="adv_trained")
    result = run_cli("--challenge=cifar10", "--model=adv_trained", f"--dest={tmp_path / 'm'}",
                     f"--url={base}/adv_trained.zip", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert digest in result.stdout and "recorded" in result.stdout
    assert (tmp_path / "m" / "adv_trained" / "checkpoint").is_file()
    result = run_cli("--challenge=mnist", "--model=adv_trained", f"--dest={tmp_path / 'n'}",
                     f"--url={base}/adv_trained.zip", cwd=tmp_path)
    assert result.returncode == 1 and "git blob id mismatch" in result.stderr


def test_cli_failures_exit_non_zero(server, tmp_path):
    base, _ = server
    result = run_cli("--challenge=mnist", "--model=natural", f"--dest={tmp_path / 'm'}",
                     f"--url={base}/nothing.zip", cwd=tmp_path)
    assert result.returncode != 0
    assert "HTTP 404" in result.stderr and str(tmp_path / "m" / "natural") in result.stderr
    result = run_cli("--challenge=mnist", "--model=natural", f"--dest={tmp_path / 'm'}",
                     f"--url={closed_port_url()}", "--timeout=5", cwd=tmp_path)
    assert result.returncode != 0 and "Offline?" in result.stderr
    result = run_cli("--challenge=svhn", cwd=tmp_path)
    assert result.returncode != 0 and "challenge" in result.stderr
