"""A standing watch is its subscriber's (or a steward's): another analyst's subscribe of the same cohort
for the same project would replace it (the watch id is the same whoever subscribes), so it is refused as
their unsubscribe is, and audited. Real Kafka (the watch topic) and chDB, as in test_web_app."""

from __future__ import annotations

import json

from streams.auth import TokenStore
from tests.radstream.web.test_web_app import (  # noqa: F401 - web: the fixture
    PROJECT,
    App,
    audit_events,
    save,
    signed_in,
    watches_on_topic,
    web,
)


def test_another_analyst_cannot_take_over_a_watch_by_subscribing_again(web: App) -> None:  # noqa: F811
    store = TokenStore(web.settings.auth.token_file)
    store.add_user("bob", ["analyst"])
    web.tokens["bob"] = store.add_token("bob")
    rita, csrf = signed_in(web, "analyst")
    cid = save(rita, csrf, "nodules", finding="nodule", finding_state="present")
    form = {"project": PROJECT, "destination": "RESEARCH"}
    assert rita.post(f"/cohorts/{cid}/subscribe", data={**form, "csrf": csrf}).status_code == 303

    bob, bcsrf = signed_in(web, "bob")
    r = bob.post(f"/cohorts/{cid}/subscribe", data={**form, "csrf": bcsrf})
    assert r.status_code == 403 and "subscribed by &#39;rita&#39;" in r.text, r.text
    r = bob.post(f"/cohorts/{cid}/unsubscribe", data={"csrf": bcsrf, "project": PROJECT})
    assert r.status_code == 403, r.text
    (w,) = watches_on_topic(web.settings).values()
    assert (w.project_id, w.requester) == (PROJECT, "rita")  # still hers, on the topic
    refused = [(e["action"], json.dumps(e)) for e in audit_events(web)
               if e["actor"] == "bob" and not e["allowed"]]
    assert [a for a, _ in refused] == ["cohort.watch", "cohort.unwatch"]
    assert "subscribed by 'rita'" in refused[0][1]  # the reason, in the event's detail

    # its subscriber may subscribe it again (a new destination, say), and a steward may replace it
    assert rita.post(f"/cohorts/{cid}/subscribe", data={**form, "csrf": csrf}).status_code == 303
    steward, scsrf = signed_in(web, "steward")
    assert steward.post(f"/cohorts/{cid}/subscribe", data={**form, "csrf": scsrf}).status_code == 303
    (w,) = watches_on_topic(web.settings).values()
    assert w.requester == "sam"
