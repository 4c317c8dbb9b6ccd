"""Card authentication (DESIGN §4, steps 2–4): a terminal proves that a genuine, usable social
security card is in its reader, and gets a short-lived card session token for settlement.

Module map::

    routes      POST /v1/card-auth/challenge and /response: models and thin handlers
    service     CardAuthService: the I/O around the checks; built per worker at start-up
    checks      the pure checks, in order: challenge, chain, registry, signature/cryptogram
    tables      card_challenges (single use by UPDATE … WHERE used IS NULL), card_certificates,
                gateway_secrets; and their store functions
    trust       pinned root + issuing CAs; bounded LRU of verified certificates by SM3
    revocation  imported CRLs (card_crls, card_revoked_serials) and each worker's revoked set
    crl_admin   `python -m gateway admin crl import | list | demo-write`
    keys        KeyManager (legacy card keys; SoftwareKeyManager now, an HSM later)
    session     stateless HMAC-SM3 card session tokens and require_card_session
    demo_cards  DEMO ONLY: sscard.demo's holders and cards in issuance's registry tables
"""
