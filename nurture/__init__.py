"""Lead nurture orchestrator: every B2B lead as one durable Temporal workflow.

The packages, in the one direction their imports point (checked by `make lint`):

- ``nurture.domain``: the lead's life as pure code (cadences, scoring, timing, the lead
  machine); no I/O, nothing from Temporal; the only package passed through the sandbox.
- ``nurture.workflows``: the lead workflow, which drives the machine with Temporal.
- ``nurture.adapters``: the outside world (database, Temporal client, SMTP, secrets, files).
- ``nurture.services``: what the product does with them (intake, opt-outs, reports...).
- ``nurture.activities``: the workflow's side effects, built on the services and adapters.
- ``nurture.web`` and ``nurture.cli``: the web app and the command line.
"""
