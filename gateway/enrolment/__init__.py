"""Enrolment: the operator's use cases for who may call the gateway.

Institutions (add, change, suspend, list), their terminals (enrol, rotate, disable, enable,
list), issuing agents and their roles, and named ops identities (viewer, operator, admin);
moving every sealed secret to a new KEK (rewrap). Each use case is a function of a unit of
work (DESIGN §6): it reads and writes through the Session it is given, appends its audit row
(gateway.audit) in the same transaction, and never commits. ``gateway admin`` (gateway.admin)
and the ops API (gateway.ops.admin_routes) only parse, call and render.

Errors are GatewayError with the enrolment codes of gateway.errors: the CLI prints their
detail on one line, the API answers them as problem+json.
"""
