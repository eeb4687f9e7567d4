"""Shows a scenario's results: a timeline table per request and a PNG chart (like Fig. 5)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab.scenarios.runner import ScenarioResult

LABELS = {
    "enc_keys.received": "enc_keys received",
    "association.requested": "KM registers the application",
    "app.registered": "agent raises sdqkdn_application_new",
    "intent.rejected": "controller rejects the request",
    "intent.rerouted": "controller re-routes the association",
    "intent.installed": "admitted, path installed on every node",
    "association.admitted": "KM sees its forwarding entry",
    "relay.link_key": "link key taken for hop",
    "relay.hop.received": "hop opened by next KM",
    "relay.stored": "key stored at last KM",
    "relay.done": "end-to-end key relayed (ack)",
    "relay.served": "keys handed to the master",
    "enc_keys.sent": "enc_keys answered",
    "dec_keys.received": "dec_keys received",
    "dec_keys.sent": "dec_keys answered",
}


def timeline_table(result: ScenarioResult) -> Table:
    table = Table(title=f"scenario {result.scenario}: key requests (ms from the enc_keys call)")
    table.add_column("request")
    table.add_column("events (ms, where)")
    table.add_column("enc ms", justify="right")
    table.add_column("dec ms", justify="right")
    table.add_column("buffer")
    table.add_column("keys equal")
    for req in result.requests:
        steps = []
        for event in req.events:
            label = LABELS.get(event["event"], event["event"])
            hop = (
                f" {event['sender']}→{event['receiver']}"
                if "sender" in event and "receiver" in event
                else ""
            )
            steps.append(f"{event['t_ms']:7.1f}  {label}{hop}  [{event['source']}]")
        table.add_row(
            f"{req.pair} #{req.index + 1}",
            "\n".join(steps) or "(no trace)",
            f"{req.enc_ms:.1f}",
            f"{req.dec_ms:.1f}",
            {True: "yes", False: "no", None: "?"}[req.from_buffer],
            "[green]yes[/]" if req.keys_match else "[red]NO[/]",
        )
    return table


def print_report(result: ScenarioResult, console: Console) -> None:
    console.print(timeline_table(result))
    verdict = "[green]all keys identical[/]" if result.all_keys_match else "[red]KEY MISMATCH[/]"
    console.print(
        f"{verdict}; first request {result.first_request_ms:.1f} ms, "
        f"later requests p50 {result.later_requests_p50_ms:.1f} ms"
    )


def timeline_chart(result: ScenarioResult, path: Path) -> None:
    """One row per request: the enc_keys and dec_keys spans, with every trace event marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.requests
    fig, ax = plt.subplots(figsize=(13, 1.8 + 0.55 * len(rows)))
    colours = plt.get_cmap("tab20")
    names = list(LABELS)
    seen: set[str] = set()
    for y, req in enumerate(rows):
        ax.barh(y, req.enc_ms, left=0, height=0.5, color="#9ecae1", edgecolor="#3182bd")
        ax.barh(y, req.dec_ms, left=req.enc_ms, height=0.5, color="#c7e9c0", edgecolor="#31a354")
        for event in req.events:
            name = event["event"]
            idx = names.index(name) if name in names else len(names)
            label = LABELS.get(name, name) if name not in seen else None
            seen.add(name)
            ax.plot(
                event["t_ms"], y, marker="|", markersize=14, color=colours(idx % 20), label=label
            )
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r.pair} #{r.index + 1}" for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the enc_keys call (blue: enc_keys, green: dec_keys)")
    ax.set_title(f"qkd-sdn scenario '{result.scenario}': timeline of each key request")
    if seen:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
