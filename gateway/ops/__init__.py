"""The settlement operations dashboard (/ops): what an ops engineer opens at the start of a shift.

* ``/ops`` and ``/ops/static/*``: a static page (HTML, small vanilla JS, CSS; no build step, no
  CDN, a strict Content-Security-Policy). It holds no data.
* ``GET /v1/ops/summary?date=``: the day's figures as JSON, hour by hour too
  (:mod:`.hourly`), behind the ops bearer token (:mod:`gateway.ops.access`), because a browser
  cannot sign with a terminal key; a few wrong tokens from one address and it is refused for a
  while (:mod:`gateway.ops.guard`);
* ``GET /v1/ops/settlements/by-institution?date=&route=&visit_type=&hour=``: the institutions
  behind a settlement figure (:mod:`.drilldown`), same token.

The figures come from read-only queries over several packages' tables (:mod:`.activity`,
:mod:`.remote`) and from the gateway's own Prometheus counters (:mod:`.counters`), which count
since the gateway started, not per day: the summary says since when. No personal data leaves
this package: no psn_no, citizen id, name or card number is selected at all.
"""
