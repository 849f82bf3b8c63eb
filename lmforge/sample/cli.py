"""`lmforge sample CHECKPOINT`, `lmforge eval CHECKPOINT` and `lmforge export-hf CHECKPOINT OUT`."""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    from lmforge.cliargs import device, non_negative_float, non_negative_int, positive_int, probability, seed

    p = subparsers.add_parser("sample", help="print continuations of a prompt from a checkpoint (streaming)")
    p.add_argument("checkpoint", help="a run dir (latest checkpoint) or a checkpoints/step_N dir")
    p.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
    p.add_argument("-n", "--num-samples", type=positive_int, default=1)
    p.add_argument("--max-new-tokens", type=positive_int, default=128)
    p.add_argument("--temperature", type=non_negative_float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=non_negative_int, default=50, help="0 = off")
    p.add_argument("--top-p", type=probability, default=1.0, help="nucleus mass in (0, 1]; 1 = off")
    p.add_argument("--seed", type=seed, default=1234, help="sample i uses seed + i")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.set_defaults(func=_cmd_sample)

    e = subparsers.add_parser("eval", help="loss and bits per byte of a checkpoint; few-shot probe")
    e.add_argument("checkpoint", help="a run dir (latest checkpoint) or a checkpoints/step_N dir")
    e.add_argument("--text", metavar="FILE", help="evaluate on this UTF-8 text file instead of the run's val shards")
    e.add_argument("--few-shot", action="store_true", help="also run the in-context learning probe")
    e.add_argument("--shots", type=_shots, default=3, help="examples in each few-shot prompt (default 3)")
    e.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    e.set_defaults(func=_cmd_eval)

    x = subparsers.add_parser("export-hf", help="save a checkpoint as a Hugging Face LlamaForCausalLM folder")
    x.add_argument("checkpoint")
    x.add_argument("out", help="output folder")
    x.set_defaults(func=_cmd_export)


def _shots(text: str) -> int:
    import argparse

    from lmforge.cliargs import non_negative_int
    from lmforge.sample.evaluate import max_shots

    value = non_negative_int(text)
    if value > max_shots():
        raise argparse.ArgumentTypeError(f"{value}: the probe has words for 0 to {max_shots()} examples")
    return value


def _device(name: str) -> str:
    from lmforge.train.dist import pick_device

    return pick_device(name)


def _cmd_sample(args) -> int:
    from lmforge.sample.engine import Engine, load_model

    model, tok = load_model(args.checkpoint, _device(args.device))
    engine = Engine(model, stop_ids={tok.bos_id})
    # Bytes of the command line that are not UTF-8 arrive as lone surrogates, which a UTF-8 terminal
    # cannot print: U+FFFD stands for them, as the tokenizer encodes them.
    prompt = args.prompt.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    prompt_ids = [tok.bos_id, *tok.encode(prompt)]
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1}/{args.num_samples} (seed {args.seed + i})")
        print(prompt, end="", flush=True)
        decoder = tok.stream_decoder()
        for token in engine.generate(prompt_ids, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                                     seed=args.seed + i):
            sys.stdout.write(decoder.feed(token))
            sys.stdout.flush()
        print(decoder.flush())
    return 0


def _cmd_eval(args) -> int:
    from pathlib import Path

    from lmforge.errors import LmforgeError
    from lmforge.sample.engine import load_checkpoint, tokenizer_dir
    from lmforge.sample.evaluate import evaluate_text, evaluate_val, few_shot_report
    from lmforge.train.checkpoint import read_model_json

    step_dir, model, tok = load_checkpoint(args.checkpoint, _device(args.device))
    if args.text:
        path = Path(args.text)
        if not path.is_file():
            raise LmforgeError(f"{path}: text file not found")
        result = evaluate_text(model, tok, path.read_text(encoding="utf-8", errors="replace"))
    else:
        result = evaluate_val(model, tok, step_dir.resolve().parent.parent,
                              tokenizer_dir=tokenizer_dir(step_dir, read_model_json(step_dir)))
    line = f"loss {result['loss']:.4f} over {result['tokens']:,} tokens"
    print(line + (f" | bits per byte {result['bpb']:.4f}" if "bpb" in result else ""))
    if args.few_shot:
        result["few_shot"] = few_shot_report(model, tok, args.shots)
        for task, scores in result["few_shot"].items():
            print(f"few-shot {task}: " + ", ".join(
                f"{k} {v:.0%}" if "nats" not in k else f"{k} {v:.3f}" if v is not None else f"{k} n/a (longer than "
                f"seq_len {model.config.seq_len})" for k, v in scores.items()))
    print(json.dumps(result))
    return 0


def _cmd_export(args) -> int:
    from pathlib import Path

    from lmforge.cliargs import writable_folder
    from lmforge.errors import LmforgeError
    from lmforge.model.gpt import to_hf
    from lmforge.sample.engine import load_checkpoint

    if (Path(args.out) / "model.json").exists():  # its model.safetensors would be replaced by HF's
        raise LmforgeError(f"OUT {args.out} holds an lmforge checkpoint, which the export would overwrite; "
                           "give another folder")
    _, model, tok = load_checkpoint(args.checkpoint)
    hf = to_hf(model, tok.bos_id)  # refuses a model Llama cannot express before any folder is made
    out = writable_folder(args.out, "OUT")
    _save_hf_atomic(hf, tok, out)
    print(f"saved {args.out} (load with transformers.AutoModelForCausalLM.from_pretrained)")
    return 0


def _save_hf_atomic(hf, tok, out) -> None:
    """Write the folder beside ``out`` first, then rename each file in: a stopped export leaves no
    half-written file under a name transformers loads."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from lmforge.tokenizer.bpe import hf_tokenizer_config, hf_tokenizer_json

    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        hf.save_pretrained(tmp)
        # made from the checkpoint's tokenizer, as the tokenizer stage's hf/ (absent with hf_export = false)
        (tmp / "tokenizer.json").write_text(json.dumps(hf_tokenizer_json(tok), ensure_ascii=False), encoding="utf-8")
        (tmp / "tokenizer_config.json").write_text(json.dumps(hf_tokenizer_config(tok)), encoding="utf-8")
        # config.json last: a folder with a config names a complete model
        for path in sorted(tmp.iterdir(), key=lambda p: p.name == "config.json"):
            os.replace(path, out / path.name)
    except OSError as exc:  # a full disk: nothing half-written was renamed in
        from lmforge.errors import LmforgeError

        raise LmforgeError(f"OUT {out}: cannot write the export ({exc.strerror or exc}); make room and "
                           "export again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
