"""`lmforge crawl` and `lmforge demo-site`: the collect stage from the command line."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("crawl", help="crawl websites politely into WARC files (resumable)",
                              description="Crawl from seed URLs into OUT/*.warc.gz; rerun the same command to resume.")
    p.add_argument("seeds", nargs="*", help="start URLs (http or https)")
    p.add_argument("--seeds-file", help="file with one seed URL per line")
    p.add_argument("--out", default="crawl", help="output folder for WARC files and crawl state (default: crawl)")
    p.add_argument("--demo", action="store_true", help="serve the python3-doc demo site on 127.0.0.1 and crawl it "
                   "(a --config's [[collect.local_sites]] are served and crawled in any case)")
    p.add_argument("--config", help="TOML config whose [collect] section sets the defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set collect.max_pages=50 (repeatable)")
    for flag, kind, text in (("--max-pages", int, "pages to record in all"), ("--max-depth", int, "link depth"),
                             ("--concurrency", int, "fetches in flight"), ("--delay", float, "seconds between "
                              "requests to one host"), ("--max-seconds", float, "wall-clock limit"),
                             ("--user-agent", str, "User-Agent header")):
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--scope", choices=("host", "hosts", "prefix"), help="which links to follow")
    p.add_argument("--include", action="append", default=[], metavar="REGEX", help="URLs must match one")
    p.add_argument("--exclude", action="append", default=[], metavar="REGEX", help="URLs matching are skipped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_crawl)
    d = subparsers.add_parser("demo-site", help="serve the python3-doc demo website on 127.0.0.1 until Ctrl-C")
    d.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    d.set_defaults(func=_cmd_demo_site)


def _collect_config(args):
    from lmforge.config import config_from_dict, load_config

    overrides = list(args.overrides)
    for name, key in (("max_pages", "max_pages"), ("max_depth", "max_depth"), ("concurrency", "concurrency"),
                      ("delay", "per_host_delay"), ("max_seconds", "max_seconds"), ("scope", "scope")):
        if getattr(args, name) is not None:
            overrides.append(f"collect.{key}={getattr(args, name)!r}".replace("'", '"'))
    data = {"collect": {}}
    if args.user_agent:
        data["collect"]["user_agent"] = args.user_agent
    if args.include or args.exclude:
        data["collect"].update(include=args.include, exclude=args.exclude)
    if args.seeds_file:
        data["collect"]["seeds_file"] = args.seeds_file
    if args.config:
        cfg = load_config(args.config, overrides)
        for key, value in data["collect"].items():
            setattr(cfg.collect, key, value)
        return cfg.collect
    from lmforge.config import apply_override

    problems: list[str] = []
    for item in overrides:
        apply_override(data, item, problems)
    return config_from_dict(data, "command line").collect


def _cmd_crawl(args) -> int:
    import contextlib

    from lmforge.cliargs import writable_folder
    from lmforge.collect.crawl import check_seeds, crawl, load_seeds
    from lmforge.errors import LmforgeError
    from lmforge.runlock import RunLock

    cfg = _collect_config(args)
    seeds = [*check_seeds(args.seeds), *load_seeds(cfg)]
    if not seeds and not args.demo and not cfg.local_sites:
        raise LmforgeError("nothing to crawl: give seed URLs, --seeds-file FILE or --demo")
    out = writable_folder(args.out, "--out")
    with contextlib.ExitStack() as stack:
        stack.enter_context(RunLock(out))  # two crawls into one folder would interleave their WARC records
        if args.demo or cfg.local_sites:
            from lmforge.collect.crawl import write_site_sources
            from lmforge.collect.demo_site import serve_sites

            cfg.serve_demo = args.demo
            sites = stack.enter_context(serve_sites(cfg, state_dir=out / "state"))
            write_site_sources(out, sites)
            seeds[:0] = [s.seed for s in sites]
        stats = crawl(cfg, out, seeds, progress=not args.quiet)
    print(json.dumps(stats))
    return 0


def _cmd_demo_site(args) -> int:
    import time

    from lmforge.collect.demo_site import serve_demo

    with serve_demo(port=args.port) as base:
        print(f"serving python3-doc at {base}/ (Ctrl-C to stop)", flush=True)
        while True:
            time.sleep(3600)
