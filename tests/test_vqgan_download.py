"""VQGAN checkpoint downloads: once per machine, verified, never a partial file taken for a whole one."""
from __future__ import annotations

import hashlib
import http.server
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_VQGAN, free_port, run_tool, tiny_cls_config

from mmdat.models import VQGAN, VQGANCheckpointError
from mmdat.models import vqgan_checkpoint


class CountingServer:
    """A loopback HTTP server for one directory that counts GET requests per path.

    ``truncate`` makes it announce the full Content-Length but send only half of the body.
    """

    def __init__(self, directory: Path, truncate: bool = False) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                outer.requests.append(self.path)
                path = directory / self.path.lstrip('/')
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data[:len(data) // 2] if truncate else data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> 'CountingServer':
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / 'cache'
    monkeypatch.setattr(vqgan_checkpoint, 'CACHE_DIR', directory)
    monkeypatch.setenv('LOCAL_RANK', '0')
    return directory


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_file_url_downloads_once_and_verifies(cache, tiny_vqgan_checkpoint):
    url = Path(tiny_vqgan_checkpoint).as_uri()
    reference = VQGAN(**TINY_VQGAN, checkpoint=tiny_vqgan_checkpoint)
    vqgan = VQGAN(**TINY_VQGAN, checkpoint=url, checkpoint_sha256=sha256(tiny_vqgan_checkpoint))
    cached = vqgan_checkpoint.download_cache_path(url)
    assert cached.parent == cache and cached.name.endswith(Path(tiny_vqgan_checkpoint).name)
    assert cached.is_file() and sorted(p.name for p in cache.iterdir()) == [cached.name]
    assert all(torch.equal(a, b) for a, b in zip(vqgan.state_dict().values(),
                                                  reference.state_dict().values()))
    before = cached.stat().st_mtime_ns
    VQGAN(**TINY_VQGAN, checkpoint=url)  # cached: not downloaded again
    assert cached.stat().st_mtime_ns == before


def test_checksum_mismatch_leaves_nothing(cache, tiny_vqgan_checkpoint):
    url = Path(tiny_vqgan_checkpoint).as_uri()
    with pytest.raises(VQGANCheckpointError, match='SHA-256'):
        VQGAN(**TINY_VQGAN, checkpoint=url, checkpoint_sha256='0' * 64)
    assert list(cache.iterdir()) == []


def test_truncated_download_is_never_taken_for_a_complete_file(cache, tiny_vqgan_checkpoint):
    with CountingServer(Path(tiny_vqgan_checkpoint).parent, truncate=True) as server:
        url = f'{server.url}/{Path(tiny_vqgan_checkpoint).name}'
        with pytest.raises(VQGANCheckpointError, match='download'):
            VQGAN(**TINY_VQGAN, checkpoint=url)
    assert list(cache.iterdir()) == []


def test_other_local_ranks_wait_for_rank_zero(cache, tiny_vqgan_checkpoint, monkeypatch):
    url = Path(tiny_vqgan_checkpoint).as_uri()
    monkeypatch.setenv('LOCAL_RANK', '1')
    monkeypatch.setenv('MMDAT_DOWNLOAD_TIMEOUT', '1')
    with pytest.raises(VQGANCheckpointError, match='waited 1 s for local rank 0'):
        VQGAN(**TINY_VQGAN, checkpoint=url)
    assert not cache.exists() or list(cache.iterdir()) == []  # rank 1 never writes
    # rank 0 finishing during the wait releases the other ranks
    monkeypatch.setenv('MMDAT_DOWNLOAD_TIMEOUT', '30')
    target = vqgan_checkpoint.download_cache_path(url)
    cache.mkdir(parents=True, exist_ok=True)

    def rank0():  # writes a temporary name, then renames: what _fetch_verified does
        time.sleep(1.0)
        partial = target.with_name(target.name + '.partial')
        partial.write_bytes(Path(tiny_vqgan_checkpoint).read_bytes())
        partial.replace(target)

    thread = threading.Thread(target=rank0)
    thread.start()
    VQGAN(**TINY_VQGAN, checkpoint=url)
    thread.join()


def test_dist_train_downloads_once_per_machine(tmp_path, tiny_vqgan_checkpoint):
    """Two processes through tools/dist_train.sh, the VQGAN served by a loopback HTTP server."""
    from mmdat.datasets import make_shapes_classification
    make_shapes_classification(tmp_path / 'data', num_per_class=2, size=16,
                               classes=('circle', 'square', 'triangle'))
    with CountingServer(Path(tiny_vqgan_checkpoint).parent) as server:
        url = f'{server.url}/{Path(tiny_vqgan_checkpoint).name}'
        vqgan_cfg = dict(type='VQGAN', **TINY_VQGAN, checkpoint=url,
                         checkpoint_sha256=sha256(tiny_vqgan_checkpoint))
        config = tiny_cls_config(tmp_path, tmp_path / 'data', vqgan_cfg)
        run_tool(['bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(tmp_path / 'work')],
                 cwd=REPO, env={'PORT': free_port(), 'MMDAT_CACHE_DIR': str(tmp_path / 'cache')})
    assert server.requests == [f'/{Path(tiny_vqgan_checkpoint).name}']
    cached = [p.name for p in (tmp_path / 'cache').iterdir()]
    assert len(cached) == 1 and cached[0].endswith(f'-{Path(tiny_vqgan_checkpoint).name}'), cached
