"""Card issuance: the card lifecycle and the registry that card authentication trusts.

Public API::

    from issuance.registry import CardRegistry, CardRecord, card_usability
    from issuance.store import metadata, Card, Cardholder, CardState
    from issuance.errors import IssuanceError, CardNotUsable, CardLost, CardSuperseded, ...
"""
