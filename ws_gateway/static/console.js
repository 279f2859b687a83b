// CareKnot Dispatch web console: a dispatcher's live view of one agency.
//
// Opened as /#token=TOKEN (a dispatcher token, in the fragment, which the browser never sends to
// the server: no log or proxy keeps it). Connects to /ws on the same host, sends the token in
// its first frame ({"type": "auth"}), keeps the
// last `seq` it received and the `epoch` it counts in and, on reconnect, sends
// {"type": "resume", "last_seq": N, "epoch": E} so nothing is missed; a `resync` frame (the
// server lost the stream and started a new epoch) starts the count again. Frames are applied
// idempotently (newest `ts` / `at` wins), because a resume may
// deliver older messages after newer ones. The map is Leaflet's (served from the console's npm
// folder, no CDN), over a drawn grid, so the page works with no tile server; an incident
// clicked on the map or in the list opens with its timeline and the dispatcher's assign and
// resolve, with whom it was offered to and what each answered (offer_status frames; a dashed
// line on the map from each caregiver asked while her offer is out). What no frame lists comes
// from the HTTP API (/config.json's api_url, with the same token): every home of the agency and
// its patient's name (which the lists show for her id), the day's visits with their state, an
// incident's recorded timeline; without the API the page says so once and goes on with the
// frames alone. The token is renewed through the API before it expires (renewal.js).
"use strict";

(() => {
  const L = window.L; // Leaflet, loaded before this script
  const STALE_AFTER_S = 120;
  const LEEDS = { lat: 53.7997, lon: -1.5492 };
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  const PING_EVERY_MS = 25000;
  const SILENCE_LIMIT_MS = 70000;
  const HISTORY = 1000; // on first connect, replay up to this many recent messages
  const LOG_MAX = 200;
  const RESOLVED_SHOWN = 20;
  const STATE_RANK = { escalated: 0, open: 1, offered: 2, assigned: 3, resolved: 4 };

  const caregivers = new Map(); // id -> {id, lat, lon, h3, ts, status}
  const incidents = new Map(); // id -> incident frame
  const names = new Map(); // caregiver id -> name (learnt from incident frames)
  let lastSeq = 0;
  let epoch = 0;
  let dirty = true; // redraw the map and counts
  let listDirty = true; // rebuild the incident list

  const el = (id) => document.getElementById(id);
  const nowS = () => Date.now() / 1000;

  // ------------------------------------------------------------------ state

  function caregiverStatus(c, now) {
    if (now - c.ts > STALE_AFTER_S || c.status === "stale") return "stale";
    return c.status === "busy" ? "busy" : "available";
  }

  function applyLocation(f) {
    if (typeof f.lat !== "number" || typeof f.lon !== "number") return;
    const known = caregivers.get(f.caregiver_id);
    if (known && known.ts > f.ts) return; // an older message replayed late
    if (known && known.status !== f.status) {
      log(`${who(f.caregiver_id)} is now ${f.status}`);
    }
    caregivers.set(f.caregiver_id, {
      id: f.caregiver_id, lat: f.lat, lon: f.lon, h3: f.h3, ts: f.ts, status: f.status,
    });
    movedCaregivers.add(f.caregiver_id);
  }

  function applyIncident(f) {
    const known = incidents.get(f.incident_id);
    if (known && known.at > f.at) return;
    if (f.assignee_id && f.assignee_name) names.set(f.assignee_id, f.assignee_name);
    incidents.set(f.incident_id, f);
    if (f.state === "resolved") dropOffers(f.incident_id);
    learnHome(f.patient_id, f.lat, f.lon);
    changedIncidents.add(f.incident_id);
    if (!known || known.state !== f.state || known.assignee_id !== f.assignee_id) {
      log(describeIncident(f), f.state === "escalated" ? "escalated" : "");
      addToTimeline(f.incident_id, f.at, describeIncident(f), f.state === "escalated" ? "escalated" : "", "frame");
      if (f.state === "escalated") el("announce").textContent = `Escalated: ${describeIncident(f)}`;
    }
    if (f.trigger && known && known.trigger !== f.trigger) {
      addToTimeline(f.incident_id, f.at, `a new ${f.trigger.replace(/_/g, " ")} from the home joined it`,
        "", "frame");
    }
    if (f.incident_id === selected) {
      detailDirty = true;
      readRecord(f.incident_id); // the record has the step this frame tells
    }
    listDirty = true;
  }

  // Offers of incidents (offer_status frames): whom each incident was asked of, and what each
  // answered or what became of her offer. The newest `at` wins, and an offer that ended never
  // goes back to `offered` (a resume may bring its first frame after its last). A resolved
  // incident's offers are let go (its timeline keeps what they told), and so is a frame of an
  // offer of one: the page holds the offers of the incidents still open alone.
  const offers = new Map(); // offer_id -> {offer_id, incident_id, caregiver_id, state, ...}
  const OFFER_WORDS = {
    offered: "asked", accepted: "accepted", declined: "declined", expired: "no answer in time",
    taken: "taken by another", cancelled: "cancelled",
  };
  let offersDirty = false; // the map's lines from the caregivers asked to their incidents

  function applyOffer(f) {
    const incident = incidents.get(f.incident_id);
    if (incident && incident.state === "resolved") return;
    const known = offers.get(f.offer_id);
    if (known && (known.at > f.at || (known.state !== "offered" && f.state === "offered"))) return;
    offers.set(f.offer_id, {
      ...f,
      offeredAt: known ? known.offeredAt : f.at,
      expires_at: f.expires_at ?? (known && known.expires_at),
      eta_s: f.eta_s ?? (known && known.eta_s),
    });
    offersDirty = true;
    if (f.incident_id === selected) detailDirty = true;
    if (known && known.state === f.state) return;
    const ended = f.state === "declined" || f.state === "expired";
    addToTimeline(f.incident_id, f.at, `offer to ${who(f.caregiver_id)}: ${OFFER_WORDS[f.state] || f.state}`,
      ended ? "escalated" : "", "frame");
  }

  function dropOffers(incidentId) {
    for (const [id, o] of offers) if (o.incident_id === incidentId) offers.delete(id);
    offersDirty = true;
    if (incidentId === selected) detailDirty = true;
  }

  function offersOf(incidentId) {
    return [...offers.values()].filter((o) => o.incident_id === incidentId)
      .sort((a, b) => a.offeredAt - b.offeredAt || a.offer_id.localeCompare(b.offer_id));
  }

  // Visit alerts (late, missed, early_departure, unscheduled_home): raised, then cleared when
  // their condition ends; one `alert_id` per condition, the newest `at` wins.
  const alerts = new Map(); // alert_id -> alert frame

  function describeAlert(f) {
    const what = f.kind.replace(/_/g, " ");
    return `${what} at ${patientName(f.patient_id)} (${who(f.caregiver_id)}): ${f.state}`;
  }

  function applyAlert(f) {
    const known = alerts.get(f.alert_id);
    if (known && known.at > f.at) return;
    alerts.set(f.alert_id, f);
    visitsDirty = true;
    wantVisits(); // the visit it is about has moved on: read the day's again
    if (known && known.state === f.state) return;
    log(describeAlert(f), f.state === "raised" ? "escalated" : "");
    if (f.state === "raised") el("announce").textContent = `Visit alert: ${describeAlert(f)}`;
  }

  // A family's page (or a caregiver's) gets visit_status frames: the latest state of each visit.
  const visits = new Map(); // visit_id -> latest visit_status frame
  const VISIT_WORDS = {
    scheduled: "is scheduled", en_route: "is on the way", arrived: "has arrived",
    in_visit: "is with them", left: "has left", missed: "missed the visit",
  };

  function describeVisit(f) {
    const eta = typeof f.eta_s === "number" ? ` (about ${Math.max(1, Math.round(f.eta_s / 60))} min away)` : "";
    return `${who(f.caregiver_id)} ${VISIT_WORDS[f.state] || f.state} · ${patientName(f.patient_id)}${eta}`;
  }

  function applyVisitStatus(f) {
    const known = visits.get(f.visit_id);
    if (known && known.at > f.at) return;
    if (f.caregiver_name) names.set(f.caregiver_id, f.caregiver_name);
    visits.set(f.visit_id, f);
    if (known && known.state === f.state && known.eta_s === f.eta_s) return;
    log(describeVisit(f), f.state === "missed" ? "escalated" : "");
    visitsDirty = true;
  }

  // A dispatcher's visits news: the visit alerts (late, missed, early departure, at a home with
  // no visit), today's, raised first; then the day's visits as the API has them (read every
  // minute and at each alert), under way first, then missed, then those to come, then those
  // done; then any visit_status frame about a visit the API did not list.
  let visitsDirty = false;
  const VISITS_SHOWN = 60;
  const VISIT_STATE_WORDS = {
    scheduled: "scheduled", en_route: "on the way", arrived: "arrived", in_visit: "in visit",
    left: "left", missed: "missed",
  };
  const UNDER_WAY = new Set(["en_route", "arrived", "in_visit"]);
  const visitRank = (state) => (UNDER_WAY.has(state) ? 0 : { missed: 1, scheduled: 2, left: 3 }[state] ?? 4);

  // The API's visit, its state the newer of the read's and a visit_status frame's since.
  function rosteredVisits() {
    if (!dayVisits) return [];
    return dayVisits.rows.map((v) => {
      const f = visits.get(v.id);
      const state = f && f.at > dayVisits.readAt ? f.state : v.state;
      return {
        id: v.id, state, patientId: v.patient_id, caregiverId: v.caregiver_id,
        start: Date.parse(v.starts_at) / 1000, end: Date.parse(v.ends_at) / 1000,
      };
    }).sort((a, b) => visitRank(a.state) - visitRank(b.state) ||
      (a.state === "left" ? b.start - a.start : a.start - b.start) || a.id.localeCompare(b.id));
  }

  function visitItem(v) {
    const item = document.createElement("li");
    item.className = `visit ${v.state}`;
    item.dataset.visitId = v.id;
    item.dataset.state = v.state;
    const when = document.createElement("time");
    when.className = "when";
    when.dateTime = new Date(v.start * 1000).toISOString();
    when.textContent = `${hhmm(v.start)}–${hhmm(v.end)}`;
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = `${patientName(v.patientId)} · ${who(v.caregiverId)}`;
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = VISIT_STATE_WORDS[v.state] || v.state;
    item.append(when, what, state);
    return item;
  }

  function visitsSummary(rows) {
    if (!dayVisits) return "";
    const n = (test) => rows.filter((v) => test(v.state)).length;
    return `${rows.length} visit${rows.length === 1 ? "" : "s"} on ${dayVisits.day}: ` +
      `${n((s) => UNDER_WAY.has(s))} under way, ${n((s) => s === "scheduled")} to come, ` +
      `${n((s) => s === "left")} done, ${n((s) => s === "missed")} missed`;
  }

  function renderVisits() {
    const since = startOfToday();
    const shownAlerts = [...alerts.values()].filter((f) => f.at >= since).sort(
      (a, b) => (a.state === "raised" ? 0 : 1) - (b.state === "raised" ? 0 : 1) || b.at - a.at,
    ).map((f) => {
      const item = document.createElement("li");
      item.className = `incident visit-alert ${f.state === "raised" ? "escalated" : "resolved"}`;
      Object.assign(item.dataset, { alertId: f.alert_id, patientId: f.patient_id, state: f.state });
      item.textContent = `${clock(f.at)} · ${describeAlert(f)}`;
      return item;
    });
    const rows = rosteredVisits();
    const listed = new Set(rows.map((v) => v.id));
    const shownRows = rows.slice(0, VISITS_SHOWN).map(visitItem);
    if (rows.length > VISITS_SHOWN) {
      const more = document.createElement("li");
      more.className = "visit more";
      more.textContent = `and ${rows.length - VISITS_SHOWN} more`;
      shownRows.push(more);
    }
    const shownVisits = [...visits.values()].filter((f) => !listed.has(f.visit_id))
      .sort((a, b) => b.at - a.at).map((f) => {
        const item = document.createElement("li");
        item.className = `visit ${f.state}`;
        item.textContent = describeVisit(f);
        return item;
      });
    el("visits").replaceChildren(...shownAlerts, ...shownRows, ...shownVisits);
    const summary = visitsSummary(rows);
    el("visits-summary").textContent = summary;
    el("visits-summary").hidden = !summary;
    el("no-visits").hidden = shownAlerts.length + shownRows.length + shownVisits.length > 0;
  }

  // ------------------------------------------------------------------ alarms

  // Alarms a person must acknowledge: each `alarm` frame is the whole alarm as it stands (the
  // newest `at` wins). Active ones are listed first, unacknowledged before acknowledged, by
  // severity then by how long they have waited; cleared ones drop to "Recently cleared".
  // A dispatcher's acknowledge or clear is answered `ack` (with its command_id) at once and
  // its outcome comes later as a `command_result`, to every dispatcher of the agency.
  const alarms = new Map(); // alarm_id -> latest alarm frame
  const hands = new Map(); // alarm_id -> {command, state, commandId, reason, sentAt, endedAt}
  const alarmNodes = new Map(); // alarm_id -> its <li>, kept so focus survives re-rendering
  const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
  const STATUS_RANK = { active_unack: 0, active_ack: 1, cleared_unack: 2, cleared_ack: 3 };
  const CLEARED_SHOWN = 10;
  const CLEARED_KEPT_S = 3600; // a cleared and acknowledged alarm is shown this long at most
  const ACK_WAIT_S = 15; // no `ack` this soon: the command may not have reached the server
  const RESULT_WAIT_S = 60; // acknowledged by the gateway but no outcome this soon
  const OUTCOME_SHOWN_S = 30;
  const KIND_WORDS = {
    incident_escalated: "incident escalated", device_offline: "device offline",
    low_battery: "low battery", flapping: "device keeps dropping off", tamper: "tamper",
    dispenser_jam: "dispenser jammed", low_supply: "medication running low",
    dose_missed: "dose missed", dose_overdue: "dose overdue",
    dose_double_attempt: "second dose tried (overdose risk)", low_spo2: "low SpO2",
    inactivity: "no movement (unusual for her)", not_up: "not up (unusual for her)",
    long_bathroom: "long in the bathroom", night_wandering: "front door at night",
    missed_meal: "missed meal",
  };
  // Alarms a caregiver can be sent to: their patient may be on the floor.
  const DISPATCHABLE = new Set(["inactivity", "not_up", "long_bathroom", "night_wandering"]);
  // Alarms of a home's routine: a dispatcher who knows better says "false alarm", and its
  // model learns from it.
  const isRoutine = (a) => String(a.source || "").startsWith("routine:");
  // `climbed` counts the rungs of its ladder taken; the first rung is the dispatchers.
  const RUNGS = ["dispatchers", "on-call manager", "external contacts"];
  const HAND_WORDS = {
    acknowledge: { pending: "Acknowledging…", done: "Acknowledged", verb: "Acknowledge" },
    clear: { pending: "Clearing…", done: "Cleared", verb: "Clear" },
    false_alarm: { pending: "Marking a false alarm…", done: "Marked a false alarm", verb: "False alarm:" },
    open_incident: { pending: "Sending a caregiver…", done: "Incident opened", verb: "Send a caregiver to" },
  };
  const REASON_WORDS = {
    unknown_alarm: "no such alarm", other_agency: "another agency's alarm",
    already_cleared: "already cleared", already_acknowledged: "already acknowledged",
    forbidden: "not allowed for this login", rate_limited: "too many commands, wait a moment",
    unavailable: "the server is busy, try again", offline: "not connected, try again",
    no_ack: "no answer from the server, try again",
    connection_lost: "connection lost before the server answered, try again",
    no_result: "no outcome yet, check the alarm",
    alarm_cleared: "the alarm cleared meanwhile", no_patient: "the alarm is about no patient",
  };
  let me = ""; // the dispatcher this page is logged in as (from `hello`)
  let alarmsDirty = true;
  let catchingUpTo = 0; // frames up to this seq are history being replayed, not news

  const kindWords = (kind) => KIND_WORDS[kind] || String(kind).replace(/_/g, " ");
  const reasonWords = (reason) => REASON_WORDS[reason] || String(reason || "refused").replace(/_/g, " ");
  const isActive = (a) => a.status === "active_unack" || a.status === "active_ack";
  const isUnacked = (a) => a.status === "active_unack" || a.status === "cleared_unack";
  const person = (actor) => {
    const id = String(actor || "").replace(/^dispatcher:/, "");
    return id && id === me ? "you" : id;
  };

  function whereOf(a) {
    const parts = [];
    if (a.patient_id) parts.push(patientName(a.patient_id));
    const [what, id] = String(a.source || "").split(/:(.*)/s);
    if ((what === "device" || what === "incident") && id) parts.push(`${what} ${id}`);
    return parts.join(" · ") || a.source || "";
  }

  function rungOf(a) {
    return RUNGS[Math.min(RUNGS.length - 1, Math.max(0, (a.climbed || 0) - 1))];
  }

  function ago(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  }

  function describeAlarm(a) {
    const count = a.count > 1 ? ` (×${a.count})` : "";
    return `${a.severity} ${kindWords(a.kind)}${count} · ${whereOf(a)}`;
  }

  function statusWords(a) {
    const by = a.acknowledged_by ? `, acknowledged by ${person(a.acknowledged_by)}` : "";
    if (a.status === "active_unack") return "not acknowledged";
    if (a.status === "active_ack") return `active${by}`;
    if (a.status === "cleared_unack") return "cleared, never acknowledged";
    return `cleared${by}`;
  }

  function applyAlarm(f, live) {
    const known = alarms.get(f.alarm_id);
    if (known && known.at > f.at) return; // an older message replayed late
    alarms.set(f.alarm_id, f);
    alarmsDirty = true;
    const changed = !known || known.status !== f.status || known.count !== f.count ||
      known.climbed !== f.climbed;
    if (!changed) return;
    const loud = f.status === "active_unack" && (f.severity === "critical" || f.severity === "major");
    let news = `alarm ${describeAlarm(f)}: ${statusWords(f)}`;
    if (f.status === "active_unack" && known && known.climbed !== f.climbed) {
      news += `, ${rungOf(f)} told`;
    }
    log(news, loud ? "escalated" : "");
    if (!live) return;
    const raisedNow = f.status === "active_unack" &&
      (!known || known.status !== "active_unack" || known.count !== f.count);
    if (raisedNow && f.severity === "critical") {
      el("alarm-alert").textContent = `Critical alarm: ${kindWords(f.kind)}, ${whereOf(f)}. ${f.detail || ""}`;
    } else if (raisedNow) {
      el("alarm-status").textContent = `New ${f.severity} alarm: ${kindWords(f.kind)}, ${whereOf(f)}`;
    }
  }

  // After a replay of history: one summary, rather than every alarm announced again.
  function caughtUp() {
    const waiting = [...alarms.values()].filter(
      (a) => a.status === "active_unack" && a.severity === "critical",
    ).length;
    if (waiting) {
      el("alarm-alert").textContent =
        `${waiting} critical alarm${waiting > 1 ? "s" : ""} not acknowledged`;
    }
  }

  function sortedAlarms() {
    const all = [...alarms.values()];
    const active = all.filter(isActive).sort(
      (a, b) => STATUS_RANK[a.status] - STATUS_RANK[b.status] ||
        (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) ||
        a.raised_at - b.raised_at,
    );
    const cleared = all.filter((a) => !isActive(a)).sort(
      (a, b) => STATUS_RANK[a.status] - STATUS_RANK[b.status] || b.at - a.at,
    );
    return { active, cleared: cleared.slice(0, CLEARED_SHOWN) };
  }

  // ---- a dispatcher's hand on an alarm

  let sendFrame = () => false; // set while connected

  function press(alarmId, command) {
    const hand = hands.get(alarmId);
    if (hand && (hand.state === "sent" || hand.state === "acked")) return; // one at a time
    const sent = sendFrame({ type: command, alarm_id: alarmId });
    hands.set(alarmId, sent
      ? { command, state: "sent", sentAt: nowS() }
      : { command, state: "failed", reason: "offline", endedAt: nowS() });
    if (!sent) tellOutcome(alarmId);
    alarmsDirty = true;
  }

  function onCommandAck(f) {
    const hand = hands.get(f.alarm_id);
    if (!hand || hand.state !== "sent" || hand.command !== f.command) return;
    hand.state = "acked";
    hand.commandId = f.command_id;
    alarmsDirty = true;
  }

  // The gateway refused a frame (before any `ack`): the oldest command still waiting is it,
  // since the gateway answers a connection's frames in order.
  function onGatewayError(f) {
    let oldest = null; // [the hands it is in, its id]
    for (const held of [hands, incidentHands]) {
      for (const [id, hand] of held) {
        if (hand.state === "sent" && (!oldest || hand.sentAt < oldest[0].get(oldest[1]).sentAt)) {
          oldest = [held, id];
        }
      }
    }
    if (!oldest) return;
    const [held, id] = oldest;
    Object.assign(held.get(id), { state: "failed", reason: f.reason, endedAt: nowS() });
    if (held === hands) {
      tellOutcome(id);
      alarmsDirty = true;
    } else if (id === selected) {
      detailDirty = true;
    }
  }

  function applyCommandResult(f) {
    if (!f.alarm_id) {
      if (f.incident_id) onIncidentResult(f);
      return;
    }
    const hand = hands.get(f.alarm_id);
    const unanswered = hand && (hand.state === "sent" ||
      (hand.state === "failed" && (hand.reason === "no_ack" || hand.reason === "connection_lost")));
    const ours = Boolean(hand && hand.command === f.command && (hand.commandId
      ? hand.commandId === f.command_id
      : unanswered && f.dispatcher_id === me)); // its `ack` lost with a connection
    const alarm = alarms.get(f.alarm_id);
    const what = alarm ? describeAlarm(alarm) : f.alarm_id;
    const whom = ours || person(f.dispatcher_id) === "you" ? "your" : `${person(f.dispatcher_id)}'s`;
    const outcome = f.outcome === "done" ? "done" : `refused (${reasonWords(f.reason)})`;
    log(`${whom} ${f.command} of alarm ${what}: ${outcome}`, f.outcome === "done" ? "" : "escalated");
    if (!ours || hand.state === "done" || hand.state === "refused") return;
    Object.assign(hand, { state: f.outcome, reason: f.reason, endedAt: nowS() });
    tellOutcome(f.alarm_id);
    alarmsDirty = true;
  }

  function handText(hand) {
    const words = HAND_WORDS[hand.command];
    if (hand.state === "sent" || hand.state === "acked") return words.pending;
    if (hand.state === "done") return words.done;
    if (hand.state === "refused") return `${words.verb} refused: ${reasonWords(hand.reason)}`;
    return `${words.verb} not done: ${reasonWords(hand.reason)}`; // never reached the worker
  }

  function tellOutcome(alarmId) {
    const hand = hands.get(alarmId);
    const alarm = alarms.get(alarmId);
    el("alarm-status").textContent = `${handText(hand)}${alarm ? ` — ${describeAlarm(alarm)}` : ""}`;
  }

  // Commands that never got an answer, and outcomes shown long enough.
  function ageHands(now) {
    for (const [id, hand] of hands) {
      if (hand.state === "sent" && now - hand.sentAt > ACK_WAIT_S) {
        Object.assign(hand, { state: "failed", reason: "no_ack", endedAt: now });
        tellOutcome(id);
      } else if (hand.state === "acked" && now - hand.sentAt > RESULT_WAIT_S) {
        Object.assign(hand, { state: "failed", reason: "no_result", endedAt: now });
        tellOutcome(id);
      } else if (hand.endedAt && now - hand.endedAt > OUTCOME_SHOWN_S) {
        hands.delete(id);
      } else {
        continue;
      }
      alarmsDirty = true;
    }
  }

  function connectionLost() {
    for (const [id, hand] of incidentHands) {
      if (hand.state !== "sent") continue;
      Object.assign(hand, { state: "failed", reason: "connection_lost", endedAt: nowS() });
      if (id === selected) detailDirty = true;
    }
    for (const [id, hand] of hands) {
      if (hand.state !== "sent") continue; // acked ones: their outcome comes on the resume
      Object.assign(hand, { state: "failed", reason: "connection_lost", endedAt: nowS() });
      tellOutcome(id);
      alarmsDirty = true;
    }
  }

  function pruneAlarms(now) {
    const { cleared } = sortedAlarms();
    const shown = new Set(cleared.map((a) => a.alarm_id));
    for (const [id, a] of alarms) {
      if (isActive(a)) continue;
      const old = a.status === "cleared_ack" && now - a.at > CLEARED_KEPT_S;
      if (old || !shown.has(id)) {
        alarms.delete(id);
        alarmsDirty = true;
      }
    }
  }

  // ---- the list, keyed by alarm_id: nodes are updated in place so keyboard focus stays

  function alarmNode(id) {
    let item = alarmNodes.get(id);
    if (item) return item;
    item = document.createElement("li");
    item.tabIndex = -1;
    item.dataset.alarmId = id;
    item.innerHTML =
      '<div class="head"><span class="severity"></span><span class="kind"></span>' +
      '<span class="count"></span></div><div class="where"></div><div class="detail"></div>' +
      '<div class="meta"><time class="ago"></time><span class="status"></span>' +
      '<span class="rung"></span></div><div class="actions">' +
      '<button type="button" data-command="acknowledge">Acknowledge</button>' +
      '<button type="button" data-command="clear">Clear</button>' +
      '<button type="button" data-command="false_alarm">False alarm</button>' +
      '<button type="button" data-command="open_incident">Send a caregiver</button>' +
      '<span class="hand"></span></div>';
    for (const button of item.querySelectorAll("button")) {
      button.addEventListener("click", () => {
        if (button.getAttribute("aria-disabled") !== "true") press(id, button.dataset.command);
      });
    }
    alarmNodes.set(id, item);
    return item;
  }

  // Which of an alarm's buttons it shows, by command.
  const SHOWN = {
    acknowledge: isUnacked,
    clear: isActive,
    false_alarm: (a) => isActive(a) && isRoutine(a),
    open_incident: (a) => isActive(a) && Boolean(a.patient_id) && DISPATCHABLE.has(a.kind),
  };

  function fillAlarm(item, a, now) {
    const part = (cls) => item.querySelector(`.${cls}`);
    item.className = `alarm ${a.severity} ${a.status}`;
    part("severity").textContent = a.severity;
    part("kind").textContent = kindWords(a.kind);
    part("count").textContent = a.count > 1 ? `×${a.count}` : "";
    part("count").title = a.count > 1 ? `raised ${a.count} times` : "";
    part("where").textContent = whereOf(a);
    part("detail").textContent = a.detail || "";
    part("detail").hidden = !a.detail;
    const ago_ = part("ago");
    ago_.dateTime = new Date(a.raised_at * 1000).toISOString();
    ago_.dataset.at = String(a.raised_at);
    ago_.textContent = `raised ${ago(now - a.raised_at)}`;
    ago_.title = `raised at ${clock(a.raised_at)}`;
    let status = statusWords(a);
    if (a.assignee) status += `, assigned to ${person(a.assignee)}`;
    part("status").textContent = status;
    const rung = part("rung");
    rung.hidden = a.status !== "active_unack";
    rung.textContent = `reached: ${rungOf(a)}`;
    const hand = hands.get(a.alarm_id);
    const busy = Boolean(hand && (hand.state === "sent" || hand.state === "acked"));
    const label = describeAlarm(a);
    for (const button of item.querySelectorAll("button")) {
      const command = button.dataset.command;
      button.hidden = !SHOWN[command](a);
      button.setAttribute("aria-disabled", String(busy));
      button.setAttribute("aria-label", `${HAND_WORDS[command].verb} ${label}`);
    }
    const said = part("hand");
    said.textContent = hand ? handText(hand) : "";
    said.className = `hand ${hand ? hand.state : ""}`;
    part("actions").hidden = [...item.querySelectorAll("button")].every((b) => b.hidden) && !hand;
  }

  // Put `items` in `list` in order, moving only what is out of place.
  function place(list, items) {
    items.forEach((item, i) => {
      if (list.children[i] !== item) list.insertBefore(item, list.children[i] || null);
    });
    while (list.children.length > items.length) list.lastElementChild.remove();
  }

  function renderAlarms(now) {
    const focused = document.activeElement;
    const focusedItem = focused && focused.closest ? focused.closest("li.alarm") : null;
    const { active, cleared } = sortedAlarms();
    const fill = (a) => {
      const item = alarmNode(a.alarm_id);
      fillAlarm(item, a, now);
      return item;
    };
    place(el("alarms"), active.map(fill));
    place(el("alarms-cleared"), cleared.map(fill));
    const kept = new Set(active.concat(cleared).map((a) => a.alarm_id));
    for (const id of alarmNodes.keys()) if (!kept.has(id)) alarmNodes.delete(id);
    el("no-alarms").hidden = active.length > 0;
    el("alarms-cleared-box").hidden = cleared.length === 0;
    // a button pressed, then hidden (acknowledged) or moved (cleared): keep the keyboard there
    if (focusedItem && (!visible(focused) || document.activeElement !== focused)) {
      const next = focusedItem.isConnected &&
        [...focusedItem.querySelectorAll("button")].find(visible);
      const target = visible(focused) ? focused
        : next || (focusedItem.isConnected ? focusedItem : el("alarms-title"));
      target.focus();
    }
    const waiting = active.filter((a) => a.status === "active_unack").length;
    document.title = `${waiting ? `(${waiting}) ` : ""}CareKnot Dispatch — console`;
  }

  function visible(node) {
    return Boolean(node && node.isConnected && !node.closest("[hidden]"));
  }

  function tickAlarmAges(now) {
    for (const node of document.querySelectorAll(".alarm time.ago")) {
      node.textContent = `raised ${ago(now - Number(node.dataset.at))}`;
    }
  }

  // ------------------------------------------------------------------ doses

  // What became of each dose today: the newest `at` wins for a patient's dose_key.
  const doses = new Map(); // `${patient_id} ${dose_key}` -> latest dose frame
  const DOSE_SHOWN = 60;
  const DOSE_WORDS = {
    overdue: "overdue", taken: "taken", late: "taken late", missed: "missed",
    administered: "given by a caregiver", refused: "refused by the patient",
    unavailable: "not available", double_attempt: "second dose tried",
  };
  const DOSE_PROBLEMS = new Set(["overdue", "missed", "double_attempt"]);
  let dosesDirty = true;

  const hhmm = (epochS) =>
    new Date(epochS * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });

  function describeDose(f) {
    const critical = f.critical ? " (critical medicine)" : "";
    return `dose ${f.name}${critical} for ${patientName(f.patient_id)}, due ${hhmm(f.due_at)}: ${
      DOSE_WORDS[f.outcome] || f.outcome}`;
  }

  function applyDose(f) {
    const key = `${f.patient_id} ${f.dose_key}`;
    const known = doses.get(key);
    if (known && known.at > f.at) return;
    doses.set(key, f);
    if (known && known.outcome === f.outcome) return;
    log(describeDose(f), DOSE_PROBLEMS.has(f.outcome) ? "escalated" : "");
    dosesDirty = true;
  }

  function startOfToday() {
    const d = new Date();
    d.setHours(0, 0, 0, 0);
    return d.getTime() / 1000;
  }

  // Today's doses, and any earlier one still overdue.
  function todaysDoses() {
    const since = startOfToday();
    for (const [key, f] of doses) {
      if (f.due_at < since - 86400) doses.delete(key);
    }
    return [...doses.values()]
      .filter((f) => f.due_at >= since || f.outcome === "overdue")
      .sort((a, b) => b.due_at - a.due_at || a.patient_id.localeCompare(b.patient_id))
      .slice(0, DOSE_SHOWN);
  }

  function renderDoses() {
    const shown = todaysDoses();
    el("doses").replaceChildren(...shown.map((f) => {
      const item = document.createElement("li");
      item.className = `dose ${f.outcome}${DOSE_PROBLEMS.has(f.outcome) ? " problem" : ""}${
        f.critical ? " critical" : ""}`;
      const due = document.createElement("time");
      due.dateTime = new Date(f.due_at * 1000).toISOString();
      due.textContent = hhmm(f.due_at);
      const what = document.createElement("span");
      what.className = "what";
      what.textContent = `${patientName(f.patient_id)} · ${f.name}${f.critical ? " (critical)" : ""}`;
      const outcome = document.createElement("span");
      outcome.className = "outcome";
      outcome.textContent = DOSE_WORDS[f.outcome] || f.outcome;
      item.append(due, what, outcome);
      return item;
    }));
    el("no-doses").hidden = shown.length > 0;
  }

  // ------------------------------------------------------------------ frames

  function onFrame(frame) {
    if (frame.type === "resync") {
      epoch = frame.epoch;
      lastSeq = 0;
      // what the page held of alarms, doses and offers is no guide: the new stream sends them
      // again (the standing offers told again)
      alarms.clear();
      doses.clear();
      offers.clear();
      alarmsDirty = true;
      dosesDirty = true;
      offersDirty = true;
      detailDirty = true;
      catchingUpTo = typeof frame.seq_now === "number" ? frame.seq_now : 0;
      log("the server lost its recent messages: taking them again (alarms, doses and offers reloaded)");
      return;
    }
    const live = !(typeof frame.seq === "number" && frame.seq <= catchingUpTo);
    if (typeof frame.seq === "number" && frame.seq > lastSeq) lastSeq = frame.seq;
    if (catchingUpTo && typeof frame.seq === "number" && frame.seq >= catchingUpTo) {
      catchingUpTo = 0;
      queueMicrotask(caughtUp); // once this frame is applied
    }
    if (frame.type === "location") applyLocation(frame);
    else if (frame.type === "incident") applyIncident(frame);
    else if (frame.type === "offer_status") applyOffer(frame);
    else if (frame.type === "alert") applyAlert(frame);
    else if (frame.type === "visit_status") applyVisitStatus(frame);
    else if (frame.type === "alarm") applyAlarm(frame, live);
    else if (frame.type === "dose") applyDose(frame);
    else if (frame.type === "command_result") applyCommandResult(frame);
    else return; // control frames (hello, ack, error, pong) and types this page does not know
    dirty = true;
  }

  // ------------------------------------------------------------------ connection

  function connect() {
    let attempt = 0;
    let socket = null;
    let pinger = 0;
    let lastHeard = 0;

    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

    function open() {
      setConnection("connecting", attempt ? "Reconnecting…" : "Connecting…");
      socket = new WebSocket(url);
      socket.addEventListener("open", () => {
        socket.send(JSON.stringify({ type: "auth", token: session.token }));
        attempt = 0;
        lastHeard = Date.now();
        setConnection("live", "Live");
        log("connected");
        pinger = setInterval(keepAlive, PING_EVERY_MS);
        sendFrame = (message) => {
          if (socket.readyState !== WebSocket.OPEN) return false;
          socket.send(JSON.stringify(message));
          return true;
        };
      });
      socket.addEventListener("message", (event) => {
        lastHeard = Date.now();
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return;
        }
        if (!frame || typeof frame !== "object") return;
        if (frame.type === "hello") onHello(frame);
        else if (frame.type === "auth_ok") el("connection").dataset.authExp = String(frame.exp);
        else if (frame.type === "ack" && frame.alarm_id) onCommandAck(frame);
        else if (frame.type === "ack" && frame.incident_id) onIncidentAck(frame);
        else if (frame.type === "error") {
          log(`server: ${frame.reason || "error"} ${frame.detail || ""}`);
          onGatewayError(frame);
        }
        onFrame(frame);
      });
      socket.addEventListener("close", (event) => {
        clearInterval(pinger);
        sendFrame = () => false;
        connectionLost();
        if (event.code === 4401) {
          // the token expired or was revoked: another try with it would fail the same way
          setConnection("down", `Signed out (${event.reason || "token refused"}): open a new link`);
          log("signed out: the token was refused");
          return;
        }
        const delay = backoff(attempt++);
        const why = event.reason ? ` (${event.reason})` : "";
        setConnection("down", `Disconnected${why}; retrying in ${Math.ceil(delay / 1000)} s`);
        log(`disconnected${why}`);
        setTimeout(open, delay);
      });
    }

    function onHello(hello) {
      if (hello.subject) el("agency").textContent = `${hello.role || ""} ${hello.subject}`.trim();
      me = hello.subject || me;
      const seqNow = typeof hello.seq_now === "number" ? hello.seq_now : 0;
      const helloEpoch = typeof hello.epoch === "number" ? hello.epoch : 0;
      // the server's stream started again: take what it has
      if (seqNow < lastSeq || (epoch && helloEpoch && helloEpoch !== epoch)) lastSeq = 0;
      epoch = helloEpoch || epoch;
      const from = lastSeq > 0 ? lastSeq : Math.max(0, seqNow - HISTORY);
      if (from < seqNow) {
        catchingUpTo = seqNow; // what comes up to here is history: shown, not announced
        socket.send(JSON.stringify({ type: "resume", last_seq: from, epoch }));
      }
    }

    function keepAlive() {
      if (Date.now() - lastHeard > SILENCE_LIMIT_MS) {
        socket.close(4000, "silent"); // a dead connection: reconnect
        return;
      }
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
    }

    open();
  }

  function backoff(attempt) {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  function setConnection(state, text) {
    const node = el("connection");
    node.dataset.state = state;
    node.textContent = text;
  }

  // ------------------------------------------------------------------ side panel

  function who(caregiverId) {
    return names.get(caregiverId) || caregiverId;
  }

  // Her name as the API's list of the agency's patients gives it (read at the start), else her
  // id: frames name a patient by id only.
  function patientName(patientId) {
    return homeNames.get(patientId) || patientId;
  }

  function eta(seconds) {
    if (typeof seconds !== "number") return "";
    return seconds < 90 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
  }

  function describeIncident(f) {
    let text = `${f.kind} at ${patientName(f.patient_id)}: ${f.state}`;
    if (f.assignee_id) text += ` — ${f.assignee_name || f.assignee_id}`;
    if (f.eta_s != null && f.state === "assigned") text += `, ETA ${eta(f.eta_s)}`;
    return text;
  }

  function clock(epochS) {
    return new Date(epochS * 1000).toLocaleTimeString("en-GB", { hour12: false });
  }

  function log(text, cls = "") {
    const item = document.createElement("li");
    if (cls) item.className = cls;
    const time = document.createElement("time");
    const now = nowS();
    time.dateTime = new Date(now * 1000).toISOString();
    time.textContent = clock(now);
    item.append(time, text);
    const list = el("log");
    list.prepend(item);
    while (list.children.length > LOG_MAX) list.lastElementChild.remove();
  }

  function sortedIncidents() {
    const all = [...incidents.values()].sort(
      (a, b) => STATE_RANK[a.state] - STATE_RANK[b.state] || b.at - a.at,
    );
    const active = all.filter((i) => i.state !== "resolved");
    return active.concat(all.filter((i) => i.state === "resolved").slice(0, RESOLVED_SHOWN));
  }

  function renderIncidents() {
    const list = el("incidents");
    const items = sortedIncidents().map((f) => {
      const item = document.createElement("li");
      item.className = `incident ${f.state}${f.incident_id === selected ? " selected" : ""}`;
      item.dataset.incidentId = f.incident_id;
      const head = document.createElement("button");
      head.type = "button";
      head.className = "head";
      head.addEventListener("click", () => selectIncident(f.incident_id));
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = `${f.kind.replace(/_/g, " ")} · ${patientName(f.patient_id)}`;
      const state = document.createElement("span");
      state.className = "state";
      state.textContent = f.state;
      head.append(kind, state);
      const detail = document.createElement("div");
      detail.className = "detail";
      const parts = [`updated ${clock(f.at)}`];
      if (f.assignee_id) parts.push(`caregiver ${f.assignee_name || f.assignee_id}`);
      if (f.eta_s != null && f.state !== "resolved") parts.push(`ETA ${eta(f.eta_s)}`);
      detail.textContent = parts.join(" · ");
      item.append(head, detail);
      item.setAttribute("aria-label", describeIncident(f));
      return item;
    });
    list.replaceChildren(...items);
    el("no-incidents").hidden = items.length > 0;
  }

  function counts(now) {
    const c = { caregivers: caregivers.size, available: 0, busy: 0, stale: 0 };
    for (const s of Object.keys(STATE_RANK)) c[s] = 0;
    for (const cg of caregivers.values()) c[caregiverStatus(cg, now)] += 1;
    for (const i of incidents.values()) if (i.state in c) c[i.state] += 1;
    c.alarms = [...alarms.values()].filter(isActive).length;
    return c;
  }

  function renderCounts(c) {
    for (const [key, value] of Object.entries(c)) {
      const node = el(`count-${key}`);
      if (node) node.textContent = String(value);
    }
    const loud = [...alarms.values()].some(
      (a) => a.status === "active_unack" && a.severity === "critical",
    );
    el("count-alarms").parentElement.classList.toggle("loud", loud);
  }

  // ------------------------------------------------------------------ map

  // Leaflet, served by the gateway from the console's npm folder. Under everything a drawn
  // grid (DOM tiles, no canvas), so the map is never blank: a tile that does not load stays
  // hidden and the grid shows through. Over it the configured tiles (/config.json), then
  // homes, incidents, alarms and caregivers as DOM markers. An escalated incident pulses by a
  // CSS animation on its own marker: nothing redraws the map for it.
  // Without Leaflet (its files not installed: scripts/bootstrap runs `npm ci` in console/) the
  // page goes on without its map: the lists, the alarms and the dispatcher's hands still work.
  const map = L ? L.map("map", { zoomSnap: 0.5 }).setView([LEEDS.lat, LEEDS.lon], 12) : null;
  if (!map) el("map").textContent = "No map: its library (Leaflet) is not installed on the server.";
  const GridLayer = map && L.GridLayer.extend({
    createTile(coords) {
      const tile = document.createElement("div");
      tile.className = "ck-grid-tile";
      const corner = map.unproject(coords.scaleBy(this.getTileSize()), coords.z);
      const label = document.createElement("span");
      label.textContent = `${corner.lat.toFixed(3)}°, ${corner.lng.toFixed(3)}°`;
      tile.append(label);
      return tile;
    },
  });
  if (map) {
    new GridLayer({ className: "ck-grid", zIndex: 0 }).addTo(map);
    // the panel's size follows the page's layout, which Leaflet does not watch by itself
    new ResizeObserver(() => map.invalidateSize()).observe(el("map"));
    L.control.scale({ imperial: false }).addTo(map);
  }
  const layer = () => (map ? L.layerGroup().addTo(map) : null);
  const homeLayer = layer();
  const offerLayer = layer();
  const incidentLayer = layer();
  const alarmLayer = layer();
  const caregiverLayer = layer();

  function addTiles(config) {
    if (!map || !config || !config.tile_url) return;
    L.tileLayer(config.tile_url, {
      attribution: config.tile_attribution || "", maxZoom: 19, zIndex: 1, className: "ck-tiles",
    }).addTo(map);
  }
  const config = fetch("/config.json").then((r) => (r.ok ? r.json() : null)).catch(() => null);
  config.then(addTiles).catch(() => {}); // no tiles: the grid shows

  const homes = new Map(); // patient id -> {lat, lon, marker, name}
  const caregiverMarkers = new Map(); // caregiver id -> marker
  const incidentMarkers = new Map(); // incident id -> marker
  const alarmMarkers = new Map(); // patient id -> marker (her worst active alarm)
  let fittedOnce = false;

  function divIcon(className, html = "") {
    return L.divIcon({ className, html, iconSize: null });
  }

  // The marker's element: its classes and data say what it shows (for eyes, and for tests).
  function mark(marker, classes, data) {
    const node = marker && marker.getElement();
    if (!node) return;
    for (const [name, on] of Object.entries(classes)) node.classList.toggle(name, on);
    Object.assign(node.dataset, data);
  }

  function homeLabel(patientId, name) {
    const label = document.createElement("span"); // text, never markup: names are people's
    label.textContent = name ? `${name} · home (${patientId})` : `home of ${patientId}`;
    return label;
  }

  // A home on the map: from the API (with her name) or from an incident frame's position.
  function learnHome(patientId, lat, lon, name = "") {
    if (typeof lat !== "number" || typeof lon !== "number" || !patientId) return;
    const known = homes.get(patientId);
    if (known) {
      if (name && known.name !== name) {
        known.name = name;
        if (known.marker) known.marker.setTooltipContent(homeLabel(patientId, name));
        mark(known.marker, {}, { patientName: name });
      }
      return;
    }
    const marker = map && L.marker([lat, lon], {
      icon: divIcon("ck-home", '<span aria-hidden="true">⌂</span>'), keyboard: false, zIndexOffset: -100,
    }).bindTooltip(homeLabel(patientId, name)).addTo(homeLayer);
    homes.set(patientId, { lat, lon, marker, name });
    mark(marker, {}, name ? { patientId, patientName: name } : { patientId });
  }

  function placeCaregiver(c, now) {
    if (!map) return;
    const status = caregiverStatus(c, now);
    let marker = caregiverMarkers.get(c.id);
    if (!marker) {
      marker = L.marker([c.lat, c.lon], { icon: divIcon("ck-cg"), keyboard: false })
        .bindTooltip("").addTo(caregiverLayer);
      caregiverMarkers.set(c.id, marker);
    } else {
      marker.setLatLng([c.lat, c.lon]);
    }
    mark(marker, { available: status === "available", busy: status === "busy", stale: status === "stale" },
      { caregiverId: c.id, status, latlng: `${c.lat.toFixed(5)},${c.lon.toFixed(5)}` });
    const age = Math.max(0, Math.round(now - c.ts));
    marker.setTooltipContent(`${who(c.id)} · ${status} · fix ${age} s ago`);
  }

  function incidentAt(i) {
    if (typeof i.lat === "number" && typeof i.lon === "number") return [i.lat, i.lon];
    const home = homes.get(i.patient_id);
    return home ? [home.lat, home.lon] : null;
  }

  function placeIncident(i) {
    if (!map) return;
    let marker = incidentMarkers.get(i.incident_id);
    const at = incidentAt(i);
    if (i.state === "resolved" || !at) {
      if (marker) incidentLayer.removeLayer(marker);
      incidentMarkers.delete(i.incident_id);
      return;
    }
    if (!marker) {
      marker = L.marker(at, {
        icon: divIcon("ck-incident", '<span class="ring"></span>'), zIndexOffset: 500,
        title: `${i.kind} at ${i.patient_id}`, alt: `${i.kind} at ${i.patient_id}`,
      }).addTo(incidentLayer);
      marker.on("click", () => selectIncident(i.incident_id));
      incidentMarkers.set(i.incident_id, marker);
    } else {
      marker.setLatLng(at);
    }
    const classes = {};
    for (const state of Object.keys(STATE_RANK)) classes[state] = state === i.state;
    classes.selected = selected === i.incident_id;
    mark(marker, classes, { incidentId: i.incident_id, state: i.state });
    const node = marker.getElement();
    if (node) node.setAttribute("aria-label", describeIncident(i));
  }

  // A dashed line from each caregiver an incident is offered to, where she is, to the incident,
  // while the offer is out; it goes when she answers or the offer ends.
  const offerLines = new Map(); // offer_id -> Leaflet polyline

  function offerEnds(o) {
    if (!o) return null; // let go (its incident resolved, or a resync)
    const c = caregivers.get(o.caregiver_id);
    const i = incidents.get(o.incident_id);
    const to = i && i.state !== "resolved" ? incidentAt(i) : null;
    return o.state === "offered" && c && to ? [[c.lat, c.lon], to] : null;
  }

  function placeOffers() {
    if (!map) return;
    for (const [id, line] of offerLines) {
      if (!offerEnds(offers.get(id))) {
        offerLayer.removeLayer(line);
        offerLines.delete(id);
      }
    }
    for (const o of offers.values()) {
      const ends = offerEnds(o);
      if (!ends) continue;
      const line = offerLines.get(o.offer_id);
      if (line) {
        line.setLatLngs(ends);
        continue;
      }
      const drawn = L.polyline(ends, { className: "ck-offer-line", interactive: false, dashArray: "6 6" })
        .addTo(offerLayer);
      const path = drawn.getElement();
      if (path) {
        path.setAttribute("data-offer-id", o.offer_id);
        path.setAttribute("data-caregiver-id", o.caregiver_id);
        path.setAttribute("data-incident-id", o.incident_id);
      }
      offerLines.set(o.offer_id, drawn);
    }
  }

  // Each patient's worst active alarm, at her home when the page knows where that is.
  function placeAlarms() {
    if (!map) return;
    const worst = new Map();
    for (const a of alarms.values()) {
      if (!isActive(a) || !a.patient_id || !homes.has(a.patient_id)) continue;
      const known = worst.get(a.patient_id);
      if (!known || (SEVERITY_RANK[a.severity] ?? 9) < (SEVERITY_RANK[known.severity] ?? 9)) {
        worst.set(a.patient_id, a);
      }
    }
    for (const [patientId, marker] of alarmMarkers) {
      if (!worst.has(patientId)) {
        alarmLayer.removeLayer(marker);
        alarmMarkers.delete(patientId);
      }
    }
    for (const [patientId, a] of worst) {
      const home = homes.get(patientId);
      let marker = alarmMarkers.get(patientId);
      if (!marker) {
        marker = L.marker([home.lat, home.lon], {
          icon: divIcon("ck-alarm", "!"), keyboard: false, zIndexOffset: 400,
        }).bindTooltip("").addTo(alarmLayer);
        alarmMarkers.set(patientId, marker);
      }
      const classes = {};
      for (const s of Object.keys(SEVERITY_RANK)) classes[s] = s === a.severity;
      classes.unacked = a.status === "active_unack";
      mark(marker, classes, { alarmId: a.alarm_id, patientId });
      marker.setTooltipContent(`alarm: ${describeAlarm(a)} (${statusWords(a)})`);
    }
  }

  function fitToData() {
    if (!map) return;
    const points = [...caregivers.values()].map((c) => [c.lat, c.lon]);
    for (const i of incidents.values()) {
      const at = i.state === "resolved" ? null : incidentAt(i);
      if (at) points.push(at);
    }
    if (points.length) map.fitBounds(L.latLngBounds(points), { padding: [24, 24], maxZoom: 14 });
  }

  function describeMap(c) {
    return `Map of ${c.caregivers} caregivers (${c.available} available, ${c.busy} busy, ` +
      `${c.stale} stale) and ${c.escalated} escalated, ${c.open + c.offered} unassigned incidents`;
  }

  // ------------------------------------------------------------------ an incident, opened

  // Clicked on the map or in the list: its state, its timeline (the frames this page got about
  // it, and the commands' outcomes), and the dispatcher's hands: assign a caregiver, resolve.
  const timelines = new Map(); // incident id -> [{at, text, cls}]
  const incidentHands = new Map(); // incident id -> {command, state, commandId, reason, sentAt, endedAt}
  let selected = null; // incident id
  const TIMELINE_MAX = 50;
  const INCIDENT_WORDS = {
    assign: { pending: "Assigning…", done: "Assigned", verb: "Assign" },
    resolve: { pending: "Resolving…", done: "Resolved", verb: "Resolve" },
  };
  const WAITING = new Set(["open", "offered", "escalated"]);

  // `src`: "frame" (an incident frame), "hand" (the dispatcher's commands and their outcomes).
  function addToTimeline(incidentId, at, text, cls = "", src = "hand") {
    const lines = timelines.get(incidentId) || [];
    lines.push({ at, text, cls, src });
    lines.sort((a, b) => a.at - b.at);
    while (lines.length > TIMELINE_MAX) lines.shift();
    timelines.set(incidentId, lines);
    if (incidentId === selected) detailDirty = true;
  }

  let detailDirty = false;

  function selectIncident(id) {
    const before = selected;
    selected = id;
    detailDirty = true;
    for (const other of [before, id]) {
      if (other && incidents.has(other)) placeIncident(incidents.get(other));
    }
    listDirty = true;
    readRecord(id);
    renderDetail();
    el("incident-detail").hidden = false;
    el("detail-title").focus();
  }

  function closeDetail() {
    const before = selected;
    selected = null;
    el("incident-detail").hidden = true;
    if (before && incidents.has(before)) placeIncident(incidents.get(before));
    listDirty = true;
  }

  function distanceM(a, b) {
    const k = Math.PI / 180;
    const x = (b[1] - a[1]) * k * Math.cos(((a[0] + b[0]) / 2) * k);
    const y = (b[0] - a[0]) * k;
    return 6371000 * Math.hypot(x, y);
  }

  // The caregivers to pick from: available ones first, nearest the incident first.
  function caregiverChoices(i, now) {
    const at = incidentAt(i);
    const rank = { available: 0, busy: 1, stale: 2 };
    return [...caregivers.values()].map((c) => ({
      c, status: caregiverStatus(c, now), d: at ? distanceM(at, [c.lat, c.lon]) : null,
    })).sort((a, b) => rank[a.status] - rank[b.status] || (a.d ?? 0) - (b.d ?? 0) ||
      a.c.id.localeCompare(b.c.id));
  }

  function fillChoices(i, now) {
    const select = el("assign-caregiver");
    const keep = select.value;
    const options = caregiverChoices(i, now).map(({ c, status, d }) => {
      const option = document.createElement("option");
      option.value = c.id;
      const far = d == null ? "" : d < 1000 ? `, ${Math.round(d)} m` : `, ${(d / 1000).toFixed(1)} km`;
      option.textContent = `${who(c.id)} (${status}${far})`;
      return option;
    });
    const hint = document.createElement("option");
    hint.value = "";
    hint.textContent = options.length ? "choose a caregiver" : "no caregiver on the map";
    select.replaceChildren(hint, ...options);
    select.value = options.some((o) => o.value === keep) ? keep : "";
  }

  function incidentHandText(hand) {
    const words = INCIDENT_WORDS[hand.command];
    if (hand.state === "sent" || hand.state === "acked") return words.pending;
    if (hand.state === "done") return words.done;
    if (hand.state === "refused") return `${words.verb} refused: ${reasonWords(hand.reason)}`;
    return `${words.verb} not done: ${reasonWords(hand.reason)}`;
  }

  function renderDetail() {
    detailDirty = false;
    const i = selected && incidents.get(selected);
    if (!i) return;
    const now = nowS();
    el("detail-title").textContent = `${i.kind.replace(/_/g, " ")} · ${patientName(i.patient_id)}`;
    el("detail-what").textContent = `Incident ${i.incident_id.slice(0, 8)}, updated ${clock(i.at)}`;
    const state = el("detail-state");
    state.textContent = i.state;
    state.className = `state ${i.state}`;
    const whom = i.assignee_id ? `Caregiver: ${i.assignee_name || i.assignee_id}` : "No caregiver yet";
    el("detail-who").textContent = i.eta_s != null && i.state === "assigned"
      ? `${whom}, ETA ${eta(i.eta_s)}` : whom;
    const asked = offersOf(i.incident_id);
    el("detail-offers").replaceChildren(...asked.map(offerItem));
    el("no-offers").hidden = asked.length > 0;
    el("no-offers").textContent = i.state === "resolved"
      ? "Resolved: its offers are in the timeline." : "Offered to nobody yet.";
    const hand = incidentHands.get(i.incident_id);
    const busy = Boolean(hand && (hand.state === "sent" || hand.state === "acked"));
    if (document.activeElement !== el("assign-caregiver")) fillChoices(i, now);
    el("assign-button").disabled = busy || !WAITING.has(i.state);
    el("resolve-button").disabled = busy || i.state === "resolved";
    el("assign-form").hidden = i.state === "resolved";
    const outcome = el("detail-outcome");
    outcome.textContent = hand ? incidentHandText(hand) : "";
    outcome.className = `outcome ${hand ? hand.state : ""}`;
    const lines = timelineOf(i.incident_id);
    el("detail-timeline").replaceChildren(...lines.map((line) => {
      const item = document.createElement("li");
      if (line.cls) item.className = line.cls;
      const time = document.createElement("time");
      time.dateTime = new Date(line.at * 1000).toISOString();
      time.textContent = clock(line.at);
      item.append(time, line.text);
      return item;
    }));
  }

  // One offer of the opened incident: whom it asked, and its state (with her ETA and until
  // when while it is out, else when it ended).
  function offerItem(o) {
    const item = document.createElement("li");
    item.className = `offer ${o.state}`;
    Object.assign(item.dataset, { offerId: o.offer_id, caregiverId: o.caregiver_id, state: o.state });
    const whom = document.createElement("span");
    whom.className = "who";
    whom.textContent = who(o.caregiver_id);
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = OFFER_WORDS[o.state] || o.state;
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = o.state === "offered"
      ? [o.eta_s != null ? `ETA ${eta(o.eta_s)}` : "", o.expires_at ? `answer by ${clock(o.expires_at)}` : ""]
        .filter(Boolean).join(", ")
      : `at ${clock(o.at)}`;
    item.append(whom, state, when);
    return item;
  }

  function pressIncident(command) {
    const i = selected && incidents.get(selected);
    if (!i) return;
    const hand = incidentHands.get(i.incident_id);
    if (hand && (hand.state === "sent" || hand.state === "acked")) return; // one at a time
    const frame = { type: command, incident_id: i.incident_id };
    if (command === "assign") {
      frame.caregiver_id = el("assign-caregiver").value;
      if (!frame.caregiver_id) {
        el("detail-outcome").textContent = "Choose a caregiver first";
        return;
      }
    }
    const sent = sendFrame(frame);
    incidentHands.set(i.incident_id, sent
      ? { command, state: "sent", sentAt: nowS(), caregiverId: frame.caregiver_id }
      : { command, state: "failed", reason: "offline", endedAt: nowS() });
    const target = frame.caregiver_id ? ` to ${who(frame.caregiver_id)}` : "";
    addToTimeline(i.incident_id, nowS(), `you: ${command}${target} sent`);
    detailDirty = true;
  }

  function onIncidentAck(f) {
    const hand = incidentHands.get(f.incident_id);
    if (!hand || hand.state !== "sent" || hand.command !== f.command) return;
    hand.state = "acked";
    hand.commandId = f.command_id;
    if (f.incident_id === selected) detailDirty = true;
  }

  function onIncidentResult(f) {
    const hand = incidentHands.get(f.incident_id);
    const ours = Boolean(hand && hand.command === f.command &&
      (hand.commandId ? hand.commandId === f.command_id : f.dispatcher_id === me));
    const whom = ours || person(f.dispatcher_id) === "you" ? "your" : `${person(f.dispatcher_id)}'s`;
    const outcome = f.outcome === "done" ? "done" : `refused (${reasonWords(f.reason)})`;
    log(`${whom} ${f.command} of ${f.incident_id.slice(0, 8)}: ${outcome}`,
      f.outcome === "done" ? "" : "escalated");
    addToTimeline(f.incident_id, f.at || nowS(), `${whom} ${f.command}: ${outcome}`,
      f.outcome === "done" ? "" : "escalated");
    if (!ours || hand.state === "done" || hand.state === "refused") return;
    Object.assign(hand, { state: f.outcome, reason: f.reason, endedAt: nowS() });
    if (f.incident_id === selected) detailDirty = true;
  }

  function ageIncidentHands(now) {
    for (const [id, hand] of incidentHands) {
      if (hand.state === "sent" && now - hand.sentAt > ACK_WAIT_S) {
        Object.assign(hand, { state: "failed", reason: "no_ack", endedAt: now });
      } else if (hand.state === "acked" && now - hand.sentAt > RESULT_WAIT_S) {
        Object.assign(hand, { state: "failed", reason: "no_result", endedAt: now });
      } else if (hand.endedAt && now - hand.endedAt > OUTCOME_SHOWN_S) {
        incidentHands.delete(id);
      } else {
        continue;
      }
      if (id === selected) detailDirty = true;
    }
  }

  // ------------------------------------------------------------------ the HTTP API

  // What no frame lists, read from the HTTP API (another origin: it answers this page's by
  // CORS) with the page's own token: every home of the agency, on the map from the start (not
  // only once an incident gives one's position), with her name; the day's visits (the agency's
  // day: its homes' time zone, else the browser's) with their state, since a dispatcher gets
  // no visit_status frames, read again every minute and at each visit alert; the caregivers'
  // names; an opened incident's timeline as recorded. Every read is all its pages. When the
  // API cannot be reached (not running, no route to it, the token refused) the page says so
  // once and goes on with the frames alone; it says so again only after it answered again.
  const API_PAGE = 500;
  const VISITS_EVERY_MS = 60000;
  const VISITS_AT_MOST_EVERY_MS = 5000; // alerts come in bursts: one read for a burst
  const api = { base: "", token: "", agency: "", ready: false, down: false };
  const homeNames = new Map(); // patient id -> name
  const zones = new Map(); // time zone -> how many of the agency's homes are in it
  let homesRead = false;
  let dayVisits = null; // {day, zone, readAt, rows}: the last read of the day's visits
  let visitsReading = false;
  let visitsAgain = false; // wanted again while a read was under way
  let visitsLast = 0;
  let visitsTimer = 0;
  const records = new Map(); // incident id -> {steps, readAt}: its timeline as recorded
  const recordReads = new Set(); // incident ids being read
  const recordAgain = new Set(); // ... and wanted again once read

  // The token's agency (its claims, read by renewal.js, not verified: the API verifies it).
  function tokenAgency(token) {
    return String((window.careknotToken && window.careknotToken.claims(token).agency) || "");
  }

  function apiDown(why) {
    if (api.down) return;
    api.down = true;
    const note = el("api-status");
    note.textContent = `No API (${why}): homes and visits from the live feed only`;
    note.hidden = false;
    log(`the HTTP API cannot be reached (${why}): going on with the live feed alone`, "escalated");
  }

  function apiUp() {
    if (!api.down) return;
    api.down = false;
    el("api-status").hidden = true;
    log("the HTTP API answers again");
  }

  async function apiGet(path) {
    let answer;
    try {
      answer = await fetch(`${api.base}${path}`, {
        headers: { Authorization: `Bearer ${api.token}`, Accept: "application/json" },
        cache: "no-store",
      });
    } catch (error) {
      apiDown("no answer");
      throw error;
    }
    if (answer.status === 401 || answer.status === 403) apiDown("the login was refused");
    else if (answer.status >= 500) apiDown(`it answered ${answer.status}`);
    if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
    apiUp();
    return answer.json();
  }

  async function apiAll(path) {
    const items = [];
    let after = "";
    for (;;) {
      const more = after ? `&after=${encodeURIComponent(after)}` : "";
      const page = await apiGet(`${path}${path.includes("?") ? "&" : "?"}limit=${API_PAGE}${more}`);
      items.push(...page.items);
      if (!page.next) return items;
      after = page.next;
    }
  }

  const agencyPath = (rest) => `/v1/agencies/${encodeURIComponent(api.agency)}/${rest}`;

  async function readHomes() {
    const patients = await apiAll(agencyPath("patients"));
    zones.clear();
    for (const p of patients) {
      homeNames.set(p.id, p.name);
      zones.set(p.zone, (zones.get(p.zone) || 0) + 1);
      learnHome(p.id, p.lat, p.lon, p.name);
    }
    homesRead = true;
    listDirty = true; // the lists name the patients now
    dosesDirty = true;
    detailDirty = true;
    log(`${patients.length} home${patients.length === 1 ? "" : "s"} of the agency on the map`);
    alarmsDirty = true; // an alarm of a home now known is drawn there
    visitsDirty = true;
  }

  async function readCaregivers() {
    for (const c of await apiAll(agencyPath("caregivers"))) {
      if (c.name && !names.has(c.id)) names.set(c.id, c.name);
    }
    visitsDirty = true;
  }

  function agencyZone() {
    let zone = "";
    let most = 0;
    for (const [name, n] of zones) if (n > most) [zone, most] = [name, n];
    return zone || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  }

  function todayIn(zone) { // YYYY-MM-DD, that zone's
    const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
    }).formatToParts(new Date()).map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day}`;
  }

  async function readVisits() {
    const zone = agencyZone();
    const day = todayIn(zone);
    const readAt = nowS();
    const rows = await apiAll(agencyPath(`visits?day=${day}&zone=${encodeURIComponent(zone)}`));
    dayVisits = { day, zone, readAt, rows };
    visitsDirty = true;
  }

  // The day's visits read again: now, or once the last read is done and a little old.
  function wantVisits() {
    if (!api.ready) return;
    if (visitsReading) {
      visitsAgain = true;
      return;
    }
    const wait = visitsLast + VISITS_AT_MOST_EVERY_MS - Date.now();
    if (wait > 0) {
      if (!visitsTimer) visitsTimer = setTimeout(() => { visitsTimer = 0; wantVisits(); }, wait);
      return;
    }
    visitsReading = true;
    visitsLast = Date.now();
    readVisits().catch(() => {}).finally(() => {
      visitsReading = false;
      if (visitsAgain) {
        visitsAgain = false;
        wantVisits();
      }
    });
  }

  function describeStep(step) {
    const what = String(step.kind).replace(/^incident_/, "").replace(/_/g, " ");
    return step.actor ? `${what} · ${step.actor}` : what;
  }

  // An incident's timeline as recorded (every step, from before this page was opened too);
  // the frames' lines stand for it until it answers, and for what came after it answered.
  function readRecord(id) {
    if (!api.ready || !id) return;
    if (recordReads.has(id)) {
      recordAgain.add(id);
      return;
    }
    recordReads.add(id);
    const readAt = nowS();
    apiGet(agencyPath(`incidents/${encodeURIComponent(id)}`)).then((record) => {
      const steps = record.timeline.map((step) => ({
        at: Date.parse(step.at) / 1000, text: describeStep(step),
        cls: String(step.kind).includes("escalat") ? "escalated" : "", src: "record",
      }));
      records.set(id, { steps, readAt });
      if (id === selected) detailDirty = true;
    }).catch(() => {}).finally(() => {
      recordReads.delete(id);
      if (recordAgain.delete(id)) readRecord(id);
    });
  }

  function timelineOf(id) {
    const lines = timelines.get(id) || [];
    const record = records.get(id);
    if (!record) return lines;
    const since = lines.filter((line) => line.src !== "frame" || line.at > record.readAt);
    return [...record.steps, ...since].sort((a, b) => a.at - b.at).slice(-TIMELINE_MAX);
  }

  // The page's token, renewed through the API before it expires (renewal.js): the fresh one
  // goes to the open connection as `auth`, to the API's calls, and to the next reconnect.
  const session = { token: "" };

  function keepToken(token) {
    if (!window.careknotToken) return;
    window.careknotToken.keep(token, api.base, {
      renewed(fresh, exp) {
        session.token = fresh;
        api.token = fresh;
        sendFrame({ type: "auth", token: fresh });
        el("connection").dataset.tokenExp = String(exp);
        log(`signed in until ${clock(exp)} (token renewed)`);
      },
      over(why) {
        log(`the token cannot be renewed (${why}): open a new link before it expires`, "escalated");
      },
      ending(at) {
        el("connection").dataset.sessionEnds = String(at);
        log(`the sign-in session ends at ${clock(at)}: open a new link to sign in again`, "escalated");
      },
    });
  }

  async function startApi(token) {
    const settings = await config;
    api.agency = tokenAgency(token);
    if (!settings || !settings.api_url || !api.agency) {
      apiDown(settings ? "none configured" : "no settings");
      return;
    }
    api.base = String(settings.api_url).replace(/\/+$/, "");
    api.token = token;
    keepToken(token);
    await readHomes().catch(() => {});
    api.ready = true;
    readCaregivers().catch(() => {});
    wantVisits();
    setInterval(() => {
      if (!homesRead) readHomes().catch(() => {});
      wantVisits();
    }, VISITS_EVERY_MS);
  }

  // ------------------------------------------------------------------ main loop

  let lastTick = 0;
  let lastDoses = 0;
  const movedCaregivers = new Set(); // ids whose marker awaits their new fix
  const changedIncidents = new Set(); // ids whose marker awaits their new state

  // Four times a second at most: what changed since is put on the page. A timer, not an
  // animation loop: the map's own moving parts are CSS, and the page works the same hidden.
  function frame() {
    const now = nowS();
    const tick = now - lastTick >= 1; // staleness changes with time alone
    if (movedCaregivers.size || changedIncidents.size) offersDirty = true;
    for (const id of tick ? caregivers.keys() : movedCaregivers) {
      if (caregivers.has(id)) placeCaregiver(caregivers.get(id), now);
    }
    movedCaregivers.clear();
    for (const id of changedIncidents) if (incidents.has(id)) placeIncident(incidents.get(id));
    changedIncidents.clear();
    if (!fittedOnce && (caregivers.size || incidents.size)) { // once, at the first news
      fitToData();
      fittedOnce = true;
    }
    if (dirty || tick) {
      const c = counts(now);
      renderCounts(c);
      el("map").setAttribute("aria-label", describeMap(c));
      lastTick = now;
    }
    if (offersDirty) {
      placeOffers();
      offersDirty = false;
    }
    if (listDirty) {
      renderIncidents();
      listDirty = false;
    }
    if (tick) {
      ageHands(now);
      ageIncidentHands(now);
      pruneAlarms(now);
    }
    if (alarmsDirty) {
      renderAlarms(now);
      placeAlarms();
      alarmsDirty = false;
    } else if (tick) {
      tickAlarmAges(now);
    }
    if (dosesDirty || now - lastDoses >= 60) { // at midnight, yesterday's leave the list
      renderDoses();
      dosesDirty = false;
      lastDoses = now;
    }
    if (visitsDirty) {
      renderVisits();
      visitsDirty = false;
    }
    if (detailDirty || (tick && selected)) renderDetail();
    dirty = false;
  }

  function start() {
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (token) history.replaceState(null, "", location.pathname + location.search); // off-screen
    el("fit").addEventListener("click", fitToData);
    el("detail-close").addEventListener("click", closeDetail);
    el("assign-form").addEventListener("submit", (event) => {
      event.preventDefault();
      pressIncident("assign");
    });
    el("resolve-button").addEventListener("click", () => pressIncident("resolve"));
    setInterval(frame, 250);
    if (!token) {
      setConnection("down", "No token: open this page as /#token=…");
      log("no token in the page's address");
      return;
    }
    session.token = token;
    connect();
    startApi(token).catch(() => apiDown("it could not be read"));
  }

  start();
})();
