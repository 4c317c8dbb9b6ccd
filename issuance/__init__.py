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
    from issuance import service  # apply, upload_employees, create_batches, produce_batch
    #   (= cards_to_make, personalise_cards with no session, record_made_cards: run apart
    #   where one database writer is shared), record_delivery, activate, report_loss, replace,
    #   expire_cards, status, history, daily_stats: each takes a Session inside the caller's
    #   transaction and never commits.

No aiohttp here; the HTTP face is gateway.issuance_api.
"""
