"""The lr schedule and the mixture loader: known values, weights, epoch caps, resume, ranks."""

from __future__ import annotations


import numpy as np
import pytest

from lmforge.errors import LmforgeError
from lmforge.train.config import TrainConfig
from lmforge.train.data import TrainLoader, load_manifest, val_batches
from lmforge.train.optim import lr_at

from lmf_train_data import make_token_run


def test_lr_schedule_known_values():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)  # top of the cosine
    assert lr_at(60, cfg) == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert lr_at(500, cfg) == pytest.approx(0.1)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 120))


def loader(rd, **kw):
    args = dict(seq_len=16, batch_size=4, seed=3)
    args.update(kw)
    return TrainLoader(rd.tokens, load_manifest(rd.tokens), log=lambda *_: None, **args)


def test_batches_are_shifted_windows_of_the_shards(token_run):
    x, y = loader(token_run).next_batch()
    assert x.shape == y.shape == (4, 16) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])


def test_mixture_weights_are_respected(tmp_path):
    rd = make_token_run(tmp_path / "r", {"a": 20000, "b": 20000}, val_tokens=0)
    ld = loader(rd, mixture={"a": 3.0, "b": 1.0})
    for _ in range(100):
        ld.next_batch()
    counts = ld.counts()
    share = counts["a"] / (counts["a"] + counts["b"])
    assert abs(share - 0.75) < 0.05  # 400 draws: 3 standard deviations is about 0.065


def test_default_mixture_is_proportional_to_tokens(tmp_path):
    rd = make_token_run(tmp_path / "r", {"a": 30000, "b": 10000}, val_tokens=0)
    ld = loader(rd)
    for _ in range(100):
        ld.next_batch()
    assert abs(ld.counts()["a"] / 400 - 0.75) < 0.05


def test_epoch_cap_stops_a_source_and_then_the_loader(tmp_path):
    rd = make_token_run(tmp_path / "r", {"a": 1601, "b": 16001}, val_tokens=0)  # 100 and 1000 windows of 16
    ld = loader(rd, epochs={"a": 2, "b": 0.5})
    batches = 0
    while ld.next_batch() is not None:
        batches += 1
    assert ld.counts() == {"a": 200, "b": 500}
    assert batches == 700 // 4
    # realised epochs: tokens seen (predicted positions) / the source's train tokens
    report = ld.source_report()
    assert report["a"] == {"weight": round(1601 / 17602, 4), "tokens": 1601, "tokens_seen": 3200,
                           "declared_epochs": 2, "epochs": round(3200 / 1601, 4)}
    assert report["b"]["tokens_seen"] == 8000 and report["b"]["epochs"] == round(8000 / 16001, 4)
    assert ld.next_batch() is None


def test_one_epoch_visits_every_window_once(tmp_path):
    rd = make_token_run(tmp_path / "r", {"a": 1601}, val_tokens=0)
    ld = loader(rd, epochs={"a": 1}, batch_size=1)
    firsts = [ld.next_batch()[0][0, 0] for _ in range(100)]
    stream = ld.sources[0].stream.read(0, 1601)
    assert sorted(firsts) == sorted(stream[np.arange(100) * 16])


def test_state_round_trip_continues_identically(token_run):
    a = loader(token_run, mixture={"a": 1.0, "b": 1.0})
    for _ in range(7):
        a.next_batch()
    b = loader(token_run, mixture={"a": 1.0, "b": 1.0})
    b.load_state(a.state())
    for _ in range(5):
        xa, xb = a.next_batch()[0], b.next_batch()[0]
        np.testing.assert_array_equal(xa, xb)


def test_ranks_read_distinct_slices_of_the_global_batch(token_run):
    whole = loader(token_run, batch_size=4)
    ranks = [loader(token_run, batch_size=2, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        x = whole.next_batch()[0]
        parts = [ld.next_batch()[0] for ld in ranks]
        np.testing.assert_array_equal(np.concatenate(parts), x)


def test_unknown_source_in_mixture_is_named(token_run):
    with pytest.raises(LmforgeError, match="unknown source.*nope.*a, b"):
        loader(token_run, mixture={"nope": 1.0})


def test_too_few_tokens_for_a_window(tmp_path):
    rd = make_token_run(tmp_path / "r", {"a": 10}, val_tokens=0)
    with pytest.raises(LmforgeError, match="seq_len"):
        loader(rd)


def test_val_batches_are_fixed_and_cover_the_val_shards(token_run):
    manifest = load_manifest(token_run.tokens)
    a = val_batches(token_run.tokens, manifest, 16, 4, 3)
    b = val_batches(token_run.tokens, manifest, 16, 4, 3)
    assert len(a) == 3 and all(x.shape == (4, 16) for x, _ in a)
    for (xa, _), (xb, _) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
