"""``troon testnet ...``: bring up, inspect, churn, check and tear down a testnet (an adapter).

Every failure an operator can cause is one line on stderr that says what to do next, and
exit code 2; never a traceback.  ``check`` exits 1 when acknowledged data is lost (or a
sampled chunk cannot be read back); ``up`` exits 1 when some node did not start.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from node.admin import AdminCallError
from node.client.aio import ClientError
from testnet.api import Testnet
from testnet.errors import SpecError, TestnetError
from testnet.local import LEAVE_GRACE
from testnet.rollout import register_rollout
from testnet.spec import DEFAULT_NAME, ChurnSpec, TestnetSpec, load_spec, spec_from_dict
from testnet.views import (
    churn_view,
    convergence_view,
    oracle_view,
    put_view,
    report_view,
    status_view,
)

DEFAULT_NODES = 8
console = Console()
errors = Console(stderr=True)

Command = Callable[[argparse.Namespace], int]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``testnet`` command group to the top-level parser."""
    group = sub.add_parser("testnet", help="run a testnet of node processes or containers")
    cmds = group.add_subparsers(dest="testnet_cmd", required=True, metavar="COMMAND")

    up = cmds.add_parser("up", help="start a testnet (default: 8 nodes named 'local')")
    up.add_argument("spec", nargs="?", type=Path, help="testnet spec YAML")
    up.add_argument("--nodes", type=_positive_int, help="node count (overrides the spec)")
    up.add_argument("--name", help="testnet name (overrides the spec; default 'local')")
    up.add_argument("--seed", type=_natural, help="seed (overrides the spec)")
    up.add_argument(
        "--backend", choices=("local", "docker"), help="local processes or docker containers"
    )
    up.add_argument("--image", help="node image for docker (default troon-node:latest)")
    up.add_argument(
        "--concurrency",
        type=_positive_int,
        help="nodes starting at once (default 24 local, 8 docker)",
    )
    up.add_argument("--timeout", type=_positive_float, default=60.0, help="seconds per node")
    up.set_defaults(func=_guard(cmd_up))

    status = cmds.add_parser("status", help="one row per node: name, addr, pid, routing, chunks")
    _name_arg(status)
    status.set_defaults(func=_guard(cmd_status))

    down = cmds.add_parser("down", help="stop every node and remove the testnet's folder")
    _name_arg(down)
    down.add_argument(
        "--grace",
        type=_positive_float,
        default=LEAVE_GRACE,
        help="seconds between SIGTERM (graceful leave) and SIGKILL",
    )
    down.set_defaults(func=_guard(cmd_down))

    put = cmds.add_parser("put", help="store random chunks through a client (kept in the ledger)")
    _name_arg(put)
    put.add_argument("--chunks", type=_natural, default=20, help="how many (default 20)")
    put.add_argument("--size", type=_positive_int, default=4096, help="bytes each (default 4096)")
    put.set_defaults(func=_guard(cmd_put))

    check = cmds.add_parser("check", help="integrity oracle over every chunk in the ledger")
    _name_arg(check)
    check.add_argument("--sample", type=_natural, default=8, help="chunks to fetch end to end")
    check.add_argument("--seed", type=_natural, help="seed of the sample")
    check.set_defaults(func=_guard(cmd_check))

    churn = cmds.add_parser("churn", help="crash and restart nodes on a seeded schedule")
    _name_arg(churn)
    churn.add_argument("--events", type=_positive_int, help="churn events (default 5)")
    churn.add_argument("--interval", type=_positive_float, help="seconds between events")
    churn.add_argument("--seed", type=_natural, help="schedule seed (default: the testnet's)")
    churn.add_argument("--mode", choices=("fixed", "random"), help="fixed or Poisson gaps")
    churn.add_argument("--kills", type=_positive_int, help="nodes killed per event")
    churn.add_argument("--restart-after", type=_restart_after, help="seconds, or 'never'")
    churn.set_defaults(func=_guard(cmd_churn))

    conv = cmds.add_parser("converge", help="wait until every node knows its nearest peers")
    _name_arg(conv)
    conv.add_argument("--timeout", type=_positive_float, default=30.0, help="seconds")
    conv.set_defaults(func=_guard(cmd_converge))

    for name, helptext, func in (
        ("kill", "crash one node (SIGKILL)", cmd_kill),
        ("restart", "start a stopped node again (same identity and chunks)", cmd_restart),
    ):
        p = cmds.add_parser(name, help=helptext)
        _name_arg(p)
        p.add_argument("index", type=_natural, help="node index (see status)")
        p.set_defaults(func=_guard(func))

    logs = cmds.add_parser("logs", help="a node's log (container output or log file)")
    _name_arg(logs)
    logs.add_argument("index", type=_natural, help="node index (see status)")
    logs.add_argument("--tail", type=_natural, help="only the last N lines")
    logs.set_defaults(func=_guard(cmd_logs))

    run = cmds.add_parser("exec", help="run a command in a node's container: exec NAME I -- CMD")
    run.add_argument("name", help="testnet name")
    run.add_argument("index", type=_natural, help="node index (see status)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    run.set_defaults(func=_guard(cmd_exec))

    upgrade = cmds.add_parser(
        "upgrade", help="rolling upgrade to another image, one node at a time, data kept"
    )
    _name_arg(upgrade)
    upgrade.add_argument("--image", required=True, help="the new node image (a local tag)")
    upgrade.add_argument(
        "--repair-timeout",
        type=_positive_float,
        default=120.0,
        help="seconds to wait for chunks to be back to 3 copies before each node",
    )
    upgrade.set_defaults(func=_guard(cmd_upgrade))

    farm = cmds.add_parser(
        "farming", help="coins minted per node and region, farming rates, the supply audit"
    )
    _name_arg(farm)
    farm.add_argument(
        "--wait", type=_positive_float, default=20.0, help="seconds to let credits settle"
    )
    farm.set_defaults(func=_guard(cmd_farming))

    soak = cmds.add_parser(
        "soak", help="workload + seeded faults for N minutes, then the checker and a report"
    )
    soak.add_argument("spec", type=Path, help="soak file (testnet, workload, faults)")
    soak.add_argument("--minutes", type=_positive_float, help="run length (overrides the file)")
    soak.add_argument("--seed", type=_natural, help="fault and workload seed (overrides)")
    soak.add_argument("--attach", metavar="NAME", help="use this running testnet instead")
    soak.add_argument("--keep", action="store_true", help="leave the testnet up afterwards")
    soak.set_defaults(func=_guard(cmd_soak))

    register_rollout(cmds)


def _name_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default=DEFAULT_NAME, help="testnet name")


def _number(kind: Callable[[str], Any], low: float, text: str, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value) or value < low:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _positive_int(text: str) -> int:
    return int(_number(int, 1, text, "an integer >= 1"))


def _natural(text: str) -> int:
    return int(_number(int, 0, text, "an integer >= 0"))


def _positive_float(text: str) -> float:
    value = float(_number(float, 0.0, text, "a number > 0"))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return value


def _restart_after(text: str) -> float:
    if text == "never":
        return -1.0
    return float(_number(float, 0.0, text, "a number >= 0 or 'never'"))


def command_guard(*extra: type[Exception]) -> Callable[[Command], Command]:
    """Turn every operator-facing failure into one red line and exit code 2."""
    expected: tuple[type[Exception], ...] = (TestnetError, AdminCallError, ClientError, *extra)

    def wrap(func: Command) -> Command:
        def run(args: argparse.Namespace) -> int:
            try:
                return func(args)
            except expected as exc:
                errors.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
                return 2
            except OSError as exc:
                errors.print(
                    f"[red]error:[/red] {exc}; check the path and permissions", soft_wrap=True
                )
                return 2

        return run

    return wrap


_guard = command_guard()


# -- commands ---------------------------------------------------------------------------------


def build_spec(args: argparse.Namespace) -> TestnetSpec:
    """The spec file (if any) with the command-line overrides applied and re-validated."""
    raw: dict[str, Any] = {"nodes": DEFAULT_NODES}
    if args.spec is not None:
        raw = load_spec(args.spec).to_dict()
    if args.nodes is not None:
        if "regions" in raw:
            raise SpecError("--nodes: the spec lists regions; change their nodes in the spec")
        raw["nodes"] = args.nodes
    if args.name is not None:
        raw["name"] = args.name
    if args.seed is not None:
        raw["seed"] = args.seed
    for flag in ("backend", "image"):
        if getattr(args, flag, None) is not None:
            raw[flag] = getattr(args, flag)
    try:
        return spec_from_dict(raw)
    except SpecError as exc:
        flag = str(exc).split(":")[0]
        if flag in ("name", "seed", "nodes", "backend", "image"):
            raise SpecError(f"--{exc}") from None
        raise


def cmd_up(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    net, report = Testnet.up(
        spec, console=console, concurrency=args.concurrency, ready_timeout=args.timeout
    )
    console.print(report_view(report))
    if not report.ok:
        where = (
            f"`troon testnet logs {net.name} INDEX` shows a node's log"
            if spec.backend != "local"
            else f"logs are in {net.state.root}/nodes/*/node.log"
        )
        console.print(f"some nodes failed; {where}")
        return 1
    conv = net.converge(timeout=max(30.0, args.timeout))
    console.print(convergence_view(conv))
    if not conv.converged:
        console.print(f"routing has not converged yet; try `troon testnet converge {net.name}`")
        return 1
    console.print(f"next: `troon testnet status {net.name}`, `troon testnet put {net.name}`")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    net = Testnet.open(args.name)
    console.print(status_view(net.name, net.status()))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    net = Testnet.open(args.name)
    report = net.down(grace=args.grace, console=console)
    console.print(report_view(report))
    console.print(f"removed {net.state.root}")
    return 0 if report.ok else 1


def cmd_put(args: argparse.Namespace) -> int:
    net = Testnet.open(args.name)
    report = net.put(args.chunks, args.size, console=console)
    console.print(put_view(report))
    return 0 if not report.failures else 1


def cmd_check(args: argparse.Namespace) -> int:
    net = Testnet.open(args.name)
    report = net.check(sample=args.sample, seed=args.seed)
    console.print(oracle_view(report))
    return 1 if report.data_lost else 0


def churn_spec(args: argparse.Namespace, base: ChurnSpec | None) -> ChurnSpec:
    """The testnet spec's churn section (or defaults) with the command-line flags applied."""
    spec = base or ChurnSpec(events=5)
    changes: dict[str, Any] = {}
    if args.events is not None:
        changes.update(events=args.events, duration_s=None)
    for flag, field in (("interval", "interval_s"), ("mode", "mode"), ("kills", "kills_per_event")):
        if getattr(args, flag) is not None:
            changes[field] = getattr(args, flag)
    if args.restart_after is not None:
        changes["restart_after_s"] = None if args.restart_after < 0 else args.restart_after
    if args.seed is not None:
        changes["seed"] = args.seed
    return dataclasses.replace(spec, **changes)


def cmd_churn(args: argparse.Namespace) -> int:
    net = Testnet.open(args.name)
    spec = churn_spec(args, net.spec.churn)
    if spec.kills_per_event >= net.spec.nodes:
        raise SpecError(f"--kills: {spec.kills_per_event} would kill all {net.spec.nodes} nodes")
    plan = net.churn_plan(spec)
    last = plan[-1].at if plan else 0.0
    seed = net.spec.seed if spec.seed is None else spec.seed
    console.print(f"{len(plan)} actions over {last:.0f} s (seed {seed})")
    outcomes = net.churn(plan, console=console)
    console.print(churn_view(outcomes))
    console.print(f"next: `troon testnet check {net.name}` to see what the churn did to the data")
    return 0 if all(o.ok for o in outcomes) else 1


def cmd_farming(args: argparse.Namespace) -> int:
    from testnet import farming

    net = Testnet.open(args.name)
    report = asyncio.run(farming.afarming(net, wait=args.wait))
    console.print(farming.render(report))
    return 0 if report.balanced else 1


def cmd_soak(args: argparse.Namespace) -> int:
    import dataclasses

    from testnet import soak

    spec = soak.load_soak(args.spec, minutes=args.minutes)
    if args.seed is not None:
        spec = dataclasses.replace(spec, seed=args.seed)
    if args.attach:
        net = Testnet.open(args.attach)
    else:
        net, report = Testnet.up(spec.testnet, console=console)
        console.print(report_view(report))
        if not report.ok:
            net.down()
            console.print("the testnet did not come up; see the node logs above")
            return 1
    try:
        conv = net.converge(timeout=60.0)
        if not conv.converged:
            console.print("routing did not converge; the soak would measure that, not faults")
            return 1
        result = asyncio.run(soak.asoak(net, spec, console=console))
    finally:
        if not args.keep and not args.attach:
            net.down()
    console.print((result.folder / "summary.md").read_text())
    console.print(f"report: {result.folder}")
    return 0 if result.report.ok else 1


def cmd_converge(args: argparse.Namespace) -> int:
    net = Testnet.open(args.name)
    report = net.converge(timeout=args.timeout)
    console.print(convergence_view(report))
    return 0 if report.converged else 1


def cmd_kill(args: argparse.Namespace) -> int:
    result = Testnet.open(args.name).kill(args.index)
    console.print(f"n{args.index:03d}: {result.detail}")
    return 0 if result.ok else 1


def cmd_restart(args: argparse.Namespace) -> int:
    result = Testnet.open(args.name).restart(args.index)
    console.print(f"n{args.index:03d}: {result.detail}")
    return 0 if result.ok else 1


def cmd_logs(args: argparse.Namespace) -> int:
    text = Testnet.open(args.name).logs(args.index, tail=args.tail)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    code, output = Testnet.open(args.name).exec(args.index, command)
    sys.stdout.write(output)
    sys.stdout.flush()
    return code


def cmd_upgrade(args: argparse.Namespace) -> int:
    net = Testnet.open(args.name)
    report = net.upgrade(args.image, console=console, repair_timeout=args.repair_timeout)
    console.print(report_view(report))
    if report.ok:
        console.print(f"next: `troon testnet check {net.name}` to see every chunk still there")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m testnet.cli ...`` without the console package (for debugging)."""
    parser = argparse.ArgumentParser(prog="troon")
    register(parser.add_subparsers(dest="group", required=True))
    args = parser.parse_args(["testnet", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
