"""``zoo train`` / ``zoo list`` / ``zoo search``: the epsilon-approximation networks and their genotypes."""
from __future__ import annotations

import time

from tanas_core.cli.common import (
    ProgressPrinter,
    SearchPrinter,
    budget_option,
    default_help,
    make_context,
    parse_budget,
    preset_option,
    print_table,
    range_help,
    run_options,
    suite_option,
    workspace,
)
from tanas_core.requests import ZooRequest, ZooSearchRequest


def register(commands) -> None:
    """Add the ``zoo`` group to ``commands``."""
    zoo = commands.add_parser("zoo", help="the epsilon-approximation networks").add_subparsers(dest="action",
                                                                                              required=True)
    train = zoo.add_parser("train", help="train (or reuse) a network per task x architecture x seed")
    zoo_options(train)
    train.add_argument("--tasks", help="comma-separated task names (default: all of the suite)")
    train.add_argument("--networks", default=None, choices=ZooRequest.CHOICES["networks"],
                       help=default_help("the tasks' networks, the suite's probe networks (what the probe view and "
                                         "`validate distances` use), or both", ZooRequest, "networks"))
    train.set_defaults(func=run_train, request=zoo_request)
    listing = zoo.add_parser("list", help="the stored networks")
    listing.add_argument("--suite")
    listing.add_argument("--preset")
    listing.add_argument("--verify", action="store_true", help="check every checkpoint's sha256")
    listing.set_defaults(func=run_list)
    search = zoo.add_parser("search", help="store each task's best genotype (FUSE, standard space)")
    suite_option(search)
    search.add_argument("--tasks", help="comma-separated task names (default: all of the suite)")
    preset_option(search, ZooSearchRequest)
    budget_option(search)
    search.add_argument("--seed", type=int, default=None, help=default_help("search seed", ZooSearchRequest, "seed"))
    run_options(search, backend=False)
    search.set_defaults(func=run_search, request=zoo_search_request)


def zoo_options(sub, suite_required: bool = True) -> None:
    """The ``ZooRequest`` options (``bench zoo`` shares them) and the run options."""
    suite_option(sub, required=suite_required)
    sub.add_argument("--archs", default=None, help=default_help("comma-separated architectures", ZooRequest,
                                                                "archs"))
    sub.add_argument("--seeds", type=int, default=None, help=range_help("K: train seeds 0..K-1", ZooRequest,
                                                                        "seeds"))
    preset_option(sub, ZooRequest)
    sub.add_argument("--workers", type=int, default=None,
                     help=range_help("networks trained at once in separate processes (CPU only; 2 suits a 2-core "
                                     "machine)", ZooRequest, "workers"))
    sub.add_argument("--replicates", type=int, default=None,
                     help=range_help("same-initialisation replicates per task and seed (other data seeds)",
                                     ZooRequest, "replicates"))
    run_options(sub)


def zoo_request(args, suite: str | None = None) -> ZooRequest:
    """The ``ZooRequest`` of ``zoo train`` (and ``bench zoo``, which passes its default ``suite``)."""
    return ZooRequest.from_dict(dict(suite=args.suite or suite, archs=args.archs, seeds=args.seeds,
                                     preset=args.preset, tasks=getattr(args, "tasks", None), workers=args.workers,
                                     replicates=args.replicates, networks=getattr(args, "networks", None)))


def zoo_search_request(args) -> ZooSearchRequest:
    """The ``ZooSearchRequest`` of ``zoo search``."""
    return ZooSearchRequest.from_dict(dict(suite=args.suite, tasks=args.tasks, preset=args.preset,
                                           budget=parse_budget(args.budget), seed=args.seed))


def run_train(args) -> int:
    """Train (or reuse) the zoo; one line per network, then the networks that miss the epsilon target."""
    from tanas_core.training.zoo import train_zoo

    request, space = zoo_request(args), workspace(args)
    started = time.perf_counter()
    with ProgressPrinter() as printer:
        records = train_zoo(request, make_context(args, space, **printer.sinks()))
    print(f"{len(records)} networks in {time.perf_counter() - started:.1f} s; workspace {space.root}")
    missing = [r for r in records if not r.is_epsilon_approximation]
    if missing:
        print(f"{len(missing)} miss the epsilon target (test accuracy < 1 - {missing[0].epsilon}): "
              + ", ".join(f"{r.task}/{r.arch}/s{r.seed}" + (f"/r{r.replicate}" if r.replicate else "")
                          + f" {r.test_accuracy:.3f}"
                          + (f" ({r.stopped.split(':')[0]})" if r.stopped else "") for r in missing))
    return 0


def run_list(args) -> int:
    """The stored networks as a table, then the probe networks (``--verify``: with each checkpoint's sha256 check)."""
    from tanas_core.training.probe_network import list_probe_networks
    from tanas_core.training.zoo import zoo_table

    space = workspace(args)
    check = space if args.verify else None
    print_table(zoo_table(space.list_networks(args.suite, args.preset), check))
    probes = list_probe_networks(space, args.suite, args.preset)
    if probes:
        print("\nprobe networks (the probe view's; accuracy over every class of the suite's datasets):")
        print_table(zoo_table(probes, check))
    return 0


def run_search(args) -> int:
    """Search (or read) each task's standard-space genotype and print them."""
    from tanas_core.search.nas import zoo_search

    request = zoo_search_request(args)
    printer = SearchPrinter()
    records = zoo_search(request, make_context(args, workspace(args), on_progress=printer.on_progress))
    print_table([dict(task=r.target, genotype=r.genotype_text, params=r.params, search_seconds=r.search_seconds,
                      status=r.status) for r in records])
    return 0
