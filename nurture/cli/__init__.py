"""The `nurture` command line (also `python starter.py ...`): CONTRACT.md, "CLI".

Each command group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

import typer

from nurture.cli import cadences as _cadences
from nurture.cli import crm as _crm
from nurture.cli import leads as _leads
from nurture.cli import mail as _mail
from nurture.cli import migrate as _migrate
from nurture.cli import operate as _operate
from nurture.cli import ops as _ops
from nurture.cli import report as _report
from nurture.cli import simulate as _simulate
from nurture.cli import stack as _stack

app = typer.Typer(
    help="Lead nurture orchestrator: cadences, leads, tasks and reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(_cadences.app, name="cadences")
_cadences.app.command("migrate")(_migrate.migrate)
_cadences.app.command("simulate")(_simulate.simulate)
app.add_typer(_leads.app, name="leads")
app.add_typer(_leads.events_app, name="events")
app.add_typer(_ops.tasks_app, name="tasks")
app.add_typer(_ops.sends_app, name="sends")
app.add_typer(_ops.users_app, name="users")
app.add_typer(_crm.crm_app, name="crm")
app.add_typer(_mail.mail_app, name="mail")
app.command("mailbox")(_mail.mailbox)
app.add_typer(_report.app, name="report")
app.add_typer(_operate.ops_app, name="ops")
app.add_typer(_operate.playbook_app, name="playbook")
_stack.register(app)


def main() -> None:
    """Entry point of the `nurture` script."""
    app()
