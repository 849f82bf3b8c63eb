"""A broken or foreign checkpoint, or a bad argument, gives one line naming the file or the
argument and the fix (exit 1, or 2 for an argument), never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lmforge.cli import main
from lmforge.errors import LmforgeError
from lmforge.sample.engine import load_model
from lmforge.train.checkpoint import latest_checkpoint


def _cli(args, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    return code, err


@pytest.fixture
def step(trained_run, tmp_path):
    """A copy of the trained run's latest checkpoint, to break."""
    rd, _ = trained_run
    copy = tmp_path / "step"
    shutil.copytree(latest_checkpoint(rd.checkpoints), copy)
    return copy


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep(len(data))])


BREAKAGES = {
    "empty weights": lambda s: (s / "model.safetensors").write_bytes(b""),
    "truncated header": lambda s: _truncate(s / "model.safetensors", lambda n: 100),
    "truncated data": lambda s: _truncate(s / "model.safetensors", lambda n: n * 9 // 10),
    "garbage weights": lambda s: (s / "model.safetensors").write_bytes(bytes(range(256)) * 40),
    "model.json not JSON": lambda s: (s / "model.json").write_text('{"model": {'),
    "model.json a list": lambda s: (s / "model.json").write_text("[1, 2]"),
    "model.json negative size": lambda s: _edit_model_json(s, n_layer=-2),
    "model.json unknown key": lambda s: _edit_model_json(s, n_layr=2),
    "model.json wrong type": lambda s: _edit_model_json(s, n_embd="64"),
    "weights missing a layer": lambda s: _edit_model_json(s, n_layer=3),
}


def _edit_model_json(step_dir, **changes):
    info = json.loads((step_dir / "model.json").read_text())
    info["model"].update(changes)
    (step_dir / "model.json").write_text(json.dumps(info))


@pytest.mark.parametrize("breakage", list(BREAKAGES))
@pytest.mark.parametrize("command", ["sample", "eval", "export-hf"])
def test_a_broken_checkpoint_is_one_line_naming_the_file(step, tmp_path, capsys, breakage, command):
    BREAKAGES[breakage](step)
    args = [command, step] + ([tmp_path / "hf"] if command == "export-hf" else ["--max-new-tokens", 2] if
                              command == "sample" else [])
    code, err = _cli(args, capsys)
    assert code == 1 and len(err.splitlines()) == 1
    name = "model.json" if "json" in breakage else "model.safetensors"
    assert f"{step / name}" in err and ("another checkpoint" in err or "checkpoints/step_N" in err)


def test_a_checkpoint_of_another_model_shape_is_named(step, capsys):
    _edit_model_json(step, n_embd=64)  # the weights are of an n_embd = 32 model
    code, err = _cli(["sample", step, "--max-new-tokens", 2], capsys)
    assert code == 1 and "weights of another model than its model.json describes" in err
    assert "(320, 32) where model.json gives (320, 64)" in err
    _edit_model_json(step, n_embd=32, n_layer=3)
    code, err = _cli(["sample", step, "--max-new-tokens", 2], capsys)
    assert code == 1 and "missing tensors layers.2." in err


def test_an_untied_head_is_not_missing_from_a_checkpoint(tmp_path):
    """A tied head is stored once, as the embedding; an untied one is its own tensor, checked as such."""
    from lmforge.model.config import ModelConfig
    from lmforge.model.gpt import GPT
    from lmforge.train.checkpoint import save_checkpoint

    for tied in (True, False):
        model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, seq_len=8, vocab_size=40, tie_embeddings=tied))
        step = save_checkpoint(tmp_path / str(tied), model, None, 1, None, {})
        loaded, _ = load_model(step, with_tokenizer=False)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_sampling_refuses_non_finite_weights(step, capsys, value):
    from safetensors.torch import load_file, save_file

    weights = load_file(step / "model.safetensors")
    name = sorted(weights)[-1]
    weights[name].view(-1)[0] = value
    save_file(weights, step / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LmforgeError, match=f"non-finite weights .* in {name}"):
        load_model(step)
    code, err = _cli(["sample", step, "--max-new-tokens", 2], capsys)
    assert code == 1 and "use an earlier checkpoints/step_N" in err


@pytest.mark.parametrize("args, message", [
    (["sample", "{ckpt}", "--temperature", "nan"], "argument --temperature: 'nan' is not a finite number"),
    (["sample", "{ckpt}", "--temperature", "-1"], "argument --temperature: -1 is negative"),
    (["sample", "{ckpt}", "--max-new-tokens", "-3"], "argument --max-new-tokens: -3 is less than 1"),
    (["sample", "{ckpt}", "--top-p", "0"], "argument --top-p: 0 is not in (0, 1]"),
    (["sample", "{ckpt}", "-n", "0"], "argument -n/--num-samples: 0 is less than 1"),
    (["sample", "{ckpt}", "--device", "bogus"], "argument --device: 'bogus' is not a device"),
    (["sample", "{ckpt}", "--seed", str(2**64)], f"argument --seed: {2**64} is not a 64-bit integer"),
    (["eval", "{ckpt}", "--few-shot", "--shots", "-2"], "argument --shots: -2 is negative"),
    (["eval", "{ckpt}", "--few-shot", "--shots", "1000"], "argument --shots: 1000: the probe has words for 0 to"),
    (["eval", "{ckpt}", "--device", "cuda:x"], "argument --device: 'cuda:x' is not a device"),
])
def test_bad_arguments_are_argument_errors(trained_run, capsys, args, message):
    rd, _ = trained_run
    code, err = _cli([a.format(ckpt=rd.root) for a in args], capsys)
    assert code == 2 and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA build with a GPU can use it")
def test_cuda_on_a_machine_without_it_is_an_argument_error(trained_run, capsys):
    code, err = _cli(["sample", trained_run[0].root, "--device", "cuda"], capsys)
    assert code == 2 and "this torch sees no CUDA GPU" in err and "--device cpu" in err


def test_an_unwritable_export_folder_is_one_line(trained_run, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _cli(["export-hf", trained_run[0].root, blocker / "hf"], capsys)
    assert code == 1 and f"{blocker / 'hf'}" in err and "give a folder you can write to" in err


@pytest.mark.parametrize("command", ["sample", "eval", "export-hf"])
def test_a_checkpoint_pruned_while_read_is_followed_to_the_newer_one(trained_run, tmp_path, capsys, monkeypatch,
                                                                    command):
    """A training running on the run saves step N+1 and removes step N (keep_checkpoints) while a
    command reads step N: the command reads step N+1 instead of failing."""
    from lmforge.sample import engine

    run = tmp_path / "run"
    shutil.copytree(trained_run[0].root, run)
    old = latest_checkpoint(run / "checkpoints")
    newer = old.with_name(f"step_{int(old.name.split('_')[1]) + 1}")
    real, read = engine.read_checkpoint_config, []

    def read_while_a_training_prunes(step_dir):
        read.append(step_dir.name)
        if step_dir == old:
            shutil.copytree(old, newer)
            (run / "checkpoints" / "latest").write_text(newer.name + "\n")
            shutil.rmtree(old)
        return real(step_dir)

    monkeypatch.setattr(engine, "read_checkpoint_config", read_while_a_training_prunes)
    extra = {"sample": ["--max-new-tokens", 2], "eval": [], "export-hf": [tmp_path / "hf"]}[command]
    code, err = _cli([command, run, *extra], capsys)
    assert code == 0 and "error" not in err and read == [old.name, newer.name]


def test_an_export_refused_or_stopped_leaves_no_file_under_a_name_transformers_loads(step, tmp_path, capsys,
                                                                                     monkeypatch):
    transformers = pytest.importorskip("transformers")
    _edit_model_json(step, logit_softcap=15.0)  # the same tensors, an option Llama cannot express
    code, err = _cli(["export-hf", step, tmp_path / "refused"], capsys)
    assert code == 1 and "logit_softcap = 15.0" in err and not (tmp_path / "refused").exists()
    _edit_model_json(step, logit_softcap=0.0)

    def stopped_half_way(self, folder, **kw):
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", stopped_half_way)
    out = tmp_path / "hf"
    assert _cli(["export-hf", step, out], capsys)[0] == 130
    assert list(out.iterdir()) == [] and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_prompt_of_bytes_that_are_not_utf8_prints_replacement_characters(trained_run, capsys):
    """Such bytes of a command line reach Python as lone surrogates, which a UTF-8 stdout refuses."""
    args = ["sample", str(trained_run[0].root), "--max-new-tokens", "3", "--temperature", "0", "--prompt"]
    outs = []
    for prompt in ("def \udcff", "def \ufffd"):
        assert main([*args, prompt]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0].startswith("def \ufffd")


def test_eval_refuses_val_shards_its_tokenizer_did_not_make(trained_run, tmp_path, capsys):
    """With another tokenizer's shards the same ids mean other text: a loss on them means nothing."""
    run = tmp_path / "run"
    shutil.copytree(trained_run[0].root, run)
    manifest_path = run / "tokens" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "tokenizer_sha256": "0" * 64}))
    code, err = _cli(["eval", run], capsys)
    assert code == 1 and "was made by another tokenizer than the checkpoint's" in err and "--text FILE" in err
    manifest_path.write_text(json.dumps({**manifest, "vocab_size": 5000}))  # a made-up one, no hash recorded
    code, err = _cli(["eval", run], capsys)
    assert code == 1 and "token ids up to 4999, beyond the model's vocabulary of 320" in err


def test_eval_of_a_checkpoint_copied_out_of_its_run_points_to_text(trained_run, tmp_path, capsys):
    shutil.copytree(latest_checkpoint(trained_run[0].checkpoints), tmp_path / "copies" / "step")
    code, err = _cli(["eval", tmp_path / "copies" / "step"], capsys)
    assert code == 1 and "no token shards to evaluate on" in err and "--text FILE" in err


def test_export_writes_the_tokenizer_even_when_the_run_kept_no_hf_copy(trained_run, tmp_path, capsys):
    """With [tokenizer] hf_export = false the run has no tokenizer/hf/: the export made its own."""
    transformers = pytest.importorskip("transformers")
    run = tmp_path / "run"
    shutil.copytree(trained_run[0].root, run)
    shutil.rmtree(run / "tokenizer" / "hf")
    for step in (run / "checkpoints").glob("step_*"):  # the copy's own tokenizer, not the original's
        info = json.loads((step / "model.json").read_text())
        (step / "model.json").write_text(json.dumps({**info, "tokenizer": str(run / "tokenizer")}))
    assert _cli(["export-hf", run, tmp_path / "hf"], capsys)[0] == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    tok = trained_run[1]
    assert hf_tok("def add(a, b):")["input_ids"] == tok.encode("def add(a, b):")


def test_few_shot_report_of_a_context_too_short_for_its_prompts_is_valid_json(trained_run):
    from lmforge.model.config import ModelConfig
    from lmforge.model.gpt import GPT
    from lmforge.sample.evaluate import few_shot_report

    tok = trained_run[1]
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, seq_len=8, vocab_size=tok.vocab_size)).eval()
    report = few_shot_report(model, tok, shots=3, count=2)
    assert report["copy"]["3-shot_answer_nats"] is None
    json.dumps(report, allow_nan=False)  # NaN is not JSON: the machine-readable line must parse


@pytest.mark.parametrize("command", ["sample", "eval", "export-hf"])
def test_a_tokenizer_larger_than_the_model_is_refused(step, tmp_path, capsys, command):
    """Another model's tokenizer in model.json: its ids beyond the model's vocabulary were an IndexError."""
    from lmforge.tokenizer.train import train_tokenizer

    train_tokenizer([" ".join(f"w{i} x{i * 7}" for i in range(3000))], vocab_size=400).save(tmp_path / "tok")
    info = json.loads((step / "model.json").read_text())
    (step / "model.json").write_text(json.dumps({**info, "tokenizer": str(tmp_path / "tok")}))
    extra = {"sample": ["--max-new-tokens", 2], "eval": ["--text", step / "model.json"], "export-hf": [tmp_path / "hf"]}
    code, err = _cli([command, step, *extra[command]], capsys)
    assert code == 1 and "has 400 tokens, the model 320: another model's tokenizer" in err


def test_export_into_a_checkpoint_folder_is_refused_and_leaves_it_whole(step, capsys):
    before = (step / "model.safetensors").read_bytes()
    code, err = _cli(["export-hf", step, step], capsys)
    assert code == 1 and "holds an lmforge checkpoint, which the export would overwrite" in err
    assert (step / "model.safetensors").read_bytes() == before


def test_an_export_onto_a_full_disk_is_one_line(step, tmp_path, capsys, monkeypatch):
    import errno

    transformers = pytest.importorskip("transformers")

    def disk_full(self, folder, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", disk_full)
    code, err = _cli(["export-hf", step, tmp_path / "hf"], capsys)
    assert code == 1 and "cannot write the export (No space left on device)" in err
    assert list((tmp_path / "hf").iterdir()) == []
