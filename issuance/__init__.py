"""Card issuance: the card lifecycle and the registry that card authentication trusts.

Public API::

    from issuance.registry import CardRegistry, CardRecord, card_usability
    from issuance.store import metadata, Card, Cardholder, CardState        # + Application,
    #   CardEvent, ProductionBatch, IssuanceAgent (migration is0002)
    from issuance.errors import IssuanceError, CardNotUsable, CardLost, CardSuperseded, ...
    from issuance.lifecycle import Stage, Event, TRANSITIONS, transition   # THE state machine
    from issuance.programme import default_programme, choose_bank          # config/*.toml
    from issuance.access import Role, Action, PERMISSIONS, Agent            # who may do what
    from issuance.production import IssuingCa, Personaliser, personalise    # new key + cert
    # The use cases: each takes a Session inside the caller's transaction and never commits.
    from issuance.applications import apply, Applicant, ApplicationRequest  # 申领
    from issuance.uploads import upload_employees, parse_upload, upload_rows  # employer CSV
    from issuance.batches import fill_batches, produce_batch, batch_report    # 制卡
    #   (produce_batch = cards_to_make, personalise_cards with no session, record_made_cards:
    #   run apart where one database writer is shared)
    from issuance.card_changes import record_delivery, activate, report_loss, replace
    from issuance.card_changes import expire_cards                            # housekeeping
    from issuance.queries import find_agent, status, history, daily_stats
    from issuance.views import ApplicationView  # what an institution sees (masked)

No aiohttp here; the HTTP face is gateway.issuance_api.
"""
