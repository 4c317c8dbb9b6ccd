"""The national-interface door (医疗保障信息平台 定点医药机构接口, DOMAIN §4): an existing HIS
switches to the gateway by changing a URL. docs/national-interface.md is its contract.

A second parser and renderer over the same use cases as ``/v1`` (DESIGN §6): one route takes
the envelope, checks the transport profile, the sign-in and the msgid, and calls the
transaction's handler, which parses its ``input``, calls a use case of settlement.counter or
settlement.crossprov and renders the national ``output``. Failures travel as HTTP 200 with
``infcode`` -1 (or -2 for a msgid conflict) and an ``err_msg`` a clerk can act on.
"""
