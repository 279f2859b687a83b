"""The Postgres schema, as an ordered list of migrations; applying them twice is harmless."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE IF NOT EXISTS agencies (
            id text PRIMARY KEY,
            name text NOT NULL
        );
        CREATE TABLE IF NOT EXISTS caregivers (
            id text PRIMARY KEY,
            agency_id text NOT NULL REFERENCES agencies(id),
            name text NOT NULL,
            skills text[] NOT NULL DEFAULT '{}'
        );
        CREATE TABLE IF NOT EXISTS patients (
            id text PRIMARY KEY,
            agency_id text NOT NULL REFERENCES agencies(id),
            name text NOT NULL,
            lat double precision NOT NULL,
            lon double precision NOT NULL
        );
        CREATE TABLE IF NOT EXISTS devices (
            id text PRIMARY KEY,
            agency_id text NOT NULL REFERENCES agencies(id),
            patient_id text NOT NULL REFERENCES patients(id),
            kind text NOT NULL
        );
        CREATE TABLE IF NOT EXISTS incidents (
            id uuid PRIMARY KEY,
            agency_id text NOT NULL REFERENCES agencies(id),
            patient_id text NOT NULL REFERENCES patients(id),
            device_id text REFERENCES devices(id),
            source_event_id text NOT NULL UNIQUE,
            kind text NOT NULL,
            severity smallint NOT NULL,
            state text NOT NULL CHECK (
                state IN ('open', 'offered', 'assigned', 'escalated', 'resolved')),
            assignee_id text REFERENCES caregivers(id),
            wave smallint NOT NULL DEFAULT 0,
            opened_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE INDEX IF NOT EXISTS incidents_open ON incidents (state)
            WHERE state IN ('open', 'offered');
        CREATE TABLE IF NOT EXISTS offers (
            id uuid PRIMARY KEY,
            incident_id uuid NOT NULL REFERENCES incidents(id),
            caregiver_id text NOT NULL REFERENCES caregivers(id),
            wave smallint NOT NULL,
            state text NOT NULL CHECK (
                state IN ('pending','accepted','declined','expired','taken','cancelled')),
            distance_m double precision NOT NULL,
            eta_s double precision NOT NULL,
            offered_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            answered_at timestamptz,
            UNIQUE (incident_id, caregiver_id)
        );
        CREATE INDEX IF NOT EXISTS offers_pending ON offers (expires_at) WHERE state = 'pending';
        CREATE TABLE IF NOT EXISTS events (
            seq bigserial PRIMARY KEY,
            event_key text NOT NULL UNIQUE,
            agency_id text NOT NULL,
            incident_id uuid,
            kind text NOT NULL,
            actor text NOT NULL,
            at timestamptz NOT NULL,
            payload jsonb NOT NULL DEFAULT '{}'
        );
        CREATE INDEX IF NOT EXISTS events_incident ON events (incident_id, seq);
        """,
    ),
    (
        2,
        """
        CREATE TABLE IF NOT EXISTS agency_rules (
            agency_id text PRIMARY KEY REFERENCES agencies(id),
            require_skills boolean NOT NULL DEFAULT false,
            require_shift boolean NOT NULL DEFAULT false
        );
        CREATE TABLE IF NOT EXISTS certificates (
            caregiver_id text NOT NULL REFERENCES caregivers(id),
            kind text NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (caregiver_id, kind)
        );
        CREATE TABLE IF NOT EXISTS shifts (
            id bigserial PRIMARY KEY,
            caregiver_id text NOT NULL REFERENCES caregivers(id),
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL CHECK (ends_at > starts_at)
        );
        CREATE INDEX IF NOT EXISTS shifts_caregiver ON shifts (caregiver_id, ends_at);
        CREATE TABLE IF NOT EXISTS worked_periods (
            id bigserial PRIMARY KEY,
            caregiver_id text NOT NULL REFERENCES caregivers(id),
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL CHECK (ends_at > starts_at)
        );
        CREATE INDEX IF NOT EXISTS worked_caregiver ON worked_periods (caregiver_id, ends_at);
        ALTER TABLE incidents ADD COLUMN IF NOT EXISTS last_trigger_at timestamptz;
        CREATE INDEX IF NOT EXISTS incidents_waiting_by_patient ON incidents (patient_id)
            WHERE state IN ('open', 'offered', 'escalated');
        """,
    ),
    (
        3,
        """
        CREATE TABLE IF NOT EXISTS owntracks_devices (
            "user" text NOT NULL,
            device text NOT NULL,
            caregiver_id text NOT NULL REFERENCES caregivers(id),
            PRIMARY KEY ("user", device)
        );
        CREATE TABLE IF NOT EXISTS fixes (
            caregiver_id text NOT NULL,
            ts timestamptz NOT NULL,
            agency_id text NOT NULL,
            lat double precision NOT NULL,
            lon double precision NOT NULL,
            acc real,
            vel real,
            batt smallint,
            received_at timestamptz NOT NULL,
            live boolean NOT NULL,
            PRIMARY KEY (caregiver_id, ts)
        );
        """,
    ),
    (
        4,
        """
        CREATE TABLE IF NOT EXISTS fences (
            patient_id text PRIMARY KEY REFERENCES patients(id),
            radius_m double precision CHECK (radius_m > 0),
            geojson jsonb,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS visits (
            id text PRIMARY KEY,
            agency_id text NOT NULL REFERENCES agencies(id),
            patient_id text NOT NULL REFERENCES patients(id),
            caregiver_id text NOT NULL REFERENCES caregivers(id),
            service text NOT NULL DEFAULT 'home_care',
            tasks text[] NOT NULL DEFAULT '{}',
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL CHECK (ends_at > starts_at),
            state text NOT NULL DEFAULT 'scheduled' CHECK (state IN (
                'scheduled', 'en_route', 'arrived', 'in_visit', 'left', 'missed')),
            check_in jsonb,
            check_out jsonb,
            eta_s double precision,
            alerts text[] NOT NULL DEFAULT '{}',
            told text,
            told_eta_s double precision,
            needs_review boolean NOT NULL DEFAULT false,
            version integer NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS visits_caregiver ON visits (caregiver_id, starts_at);
        CREATE INDEX IF NOT EXISTS visits_agency ON visits (agency_id, starts_at);
        CREATE INDEX IF NOT EXISTS visits_active ON visits (starts_at)
            WHERE state IN ('scheduled', 'en_route', 'arrived');
        CREATE TABLE IF NOT EXISTS visit_alerts (
            id bigserial PRIMARY KEY,
            alert_key text NOT NULL,
            kind text NOT NULL,
            agency_id text NOT NULL,
            patient_id text NOT NULL,
            caregiver_id text NOT NULL,
            visit_id text,
            raised_at timestamptz NOT NULL,
            cleared_at timestamptz
        );
        CREATE UNIQUE INDEX IF NOT EXISTS visit_alerts_open ON visit_alerts (alert_key)
            WHERE cleared_at IS NULL;
        CREATE INDEX IF NOT EXISTS visit_alerts_agency ON visit_alerts (agency_id, raised_at);
        """,
    ),
    (
        5,
        """
        CREATE TABLE IF NOT EXISTS announcements (
            id uuid PRIMARY KEY,
            made bigserial NOT NULL,
            incident_id uuid NOT NULL,
            made_at timestamptz NOT NULL,
            body jsonb NOT NULL
        );
        CREATE INDEX IF NOT EXISTS announcements_incident ON announcements (incident_id, made);
        CREATE INDEX IF NOT EXISTS announcements_made ON announcements (made_at);
        """,
    ),
    (
        6,
        """
        ALTER TABLE announcements RENAME COLUMN incident_id TO subject_id;
        ALTER INDEX announcements_incident RENAME TO announcements_subject;
        CREATE TABLE IF NOT EXISTS alarms (
            id uuid PRIMARY KEY,
            agency_id text NOT NULL REFERENCES agencies(id),
            source text NOT NULL,
            kind text NOT NULL,
            severity text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
            patient_id text,
            detail text NOT NULL DEFAULT '',
            raised_at timestamptz NOT NULL,
            last_at timestamptz NOT NULL,
            count integer NOT NULL DEFAULT 1,
            cleared_at timestamptz,
            cleared_by text,
            acknowledged_at timestamptz,
            acknowledged_by text,
            assignee text,
            climbed smallint NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX IF NOT EXISTS alarms_one_active ON alarms (agency_id, source, kind)
            WHERE cleared_at IS NULL;
        CREATE INDEX IF NOT EXISTS alarms_climbing ON alarms (raised_at)
            WHERE cleared_at IS NULL AND acknowledged_at IS NULL;
        CREATE TABLE IF NOT EXISTS escalation_ladders (
            agency_id text NOT NULL REFERENCES agencies(id),
            severity text NOT NULL,
            steps jsonb NOT NULL,
            PRIMARY KEY (agency_id, severity)
        );
        CREATE TABLE IF NOT EXISTS alarm_contacts (
            agency_id text NOT NULL REFERENCES agencies(id),
            rung text NOT NULL CHECK (rung IN ('on_call', 'external')),
            url text NOT NULL,
            PRIMARY KEY (agency_id, rung, url)
        );
        """,
    ),
    (
        7,
        """
        CREATE TABLE IF NOT EXISTS medication_schedules (
            patient_id text PRIMARY KEY REFERENCES patients(id),
            zone text NOT NULL,
            call_at_fraction double precision NOT NULL DEFAULT 0.5,
            on_time_s double precision NOT NULL DEFAULT 300,
            doses jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS dose_outcomes (
            patient_id text NOT NULL REFERENCES patients(id),
            dose_key text NOT NULL,
            outcome text NOT NULL CHECK (outcome IN ('taken', 'late', 'missed')),
            at timestamptz NOT NULL,
            source text NOT NULL,
            PRIMARY KEY (patient_id, dose_key)
        );
        CREATE INDEX IF NOT EXISTS dose_outcomes_recent ON dose_outcomes (at);
        """,
    ),
    (
        8,
        """
        CREATE TABLE IF NOT EXISTS dose_administrations (
            caregiver_id text NOT NULL,
            record_id text NOT NULL,
            patient_id text NOT NULL REFERENCES patients(id),
            dose_key text NOT NULL,
            action text NOT NULL CHECK (action IN ('administered', 'refused', 'unavailable')),
            visit_id text NOT NULL,
            given_at timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL,
            note text,
            PRIMARY KEY (caregiver_id, record_id)
        );
        CREATE INDEX IF NOT EXISTS dose_administrations_dose
            ON dose_administrations (patient_id, dose_key, recorded_at);
        """,
    ),
    (
        9,
        """
        CREATE TABLE IF NOT EXISTS vitals_raw (
            device_id text NOT NULL,
            ts timestamptz NOT NULL,
            patient_id text NOT NULL,
            hr real,
            spo2 real,
            temp real,
            bp_sys real,
            bp_dia real,
            dropped text[] NOT NULL DEFAULT '{}',
            PRIMARY KEY (device_id, ts)
        );
        CREATE INDEX IF NOT EXISTS vitals_raw_patient ON vitals_raw (patient_id, ts);
        CREATE INDEX IF NOT EXISTS vitals_raw_age ON vitals_raw USING brin (ts);
        CREATE TABLE IF NOT EXISTS vitals_minutes (
            patient_id text NOT NULL,
            measure text NOT NULL,
            minute timestamptz NOT NULL,
            low real NOT NULL,
            high real NOT NULL,
            total double precision NOT NULL,
            count integer NOT NULL CHECK (count > 0),
            PRIMARY KEY (patient_id, measure, minute)
        );
        CREATE TABLE IF NOT EXISTS vitals_thresholds (
            patient_id text NOT NULL REFERENCES patients(id),
            kind text NOT NULL,
            enabled boolean NOT NULL DEFAULT true,
            measure text NOT NULL CHECK (measure IN ('hr', 'spo2', 'temp', 'bp_sys', 'bp_dia')),
            direction text NOT NULL CHECK (direction IN ('above', 'below')),
            threshold double precision NOT NULL,
            hold_s double precision NOT NULL,
            clear_at double precision NOT NULL,
            clear_hold_s double precision NOT NULL,
            severity text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
            PRIMARY KEY (patient_id, kind)
        );
        """,
    ),
    (
        10,
        """
        CREATE TABLE IF NOT EXISTS device_health (
            device_id text PRIMARY KEY REFERENCES devices(id),
            online boolean NOT NULL,
            last_seen timestamptz NOT NULL,
            last_heartbeat timestamptz,
            changed_at timestamptz NOT NULL,
            interval_s double precision NOT NULL CHECK (interval_s > 0),
            battery smallint CHECK (battery BETWEEN 0 AND 100),
            battery_alarm text CHECK (battery_alarm IN ('major', 'minor')),
            rssi double precision,
            firmware text,
            tamper boolean NOT NULL DEFAULT false,
            flapping boolean NOT NULL DEFAULT false,
            drops double precision[] NOT NULL DEFAULT '{}',
            updated_at timestamptz NOT NULL
        );
        """,
    ),
    (
        11,
        """
        CREATE TABLE IF NOT EXISTS device_events (
            event_id text PRIMARY KEY,
            agency_id text NOT NULL,
            device_id text NOT NULL,
            patient_id text,
            type text NOT NULL,
            ts timestamptz NOT NULL,
            seq bigint NOT NULL,
            data jsonb NOT NULL,
            received_at timestamptz NOT NULL
        );
        CREATE INDEX IF NOT EXISTS device_events_of_patient ON device_events (patient_id, ts);
        CREATE INDEX IF NOT EXISTS device_events_of_agency ON device_events (agency_id);
        """,
    ),
    (
        12,
        """
        ALTER TABLE patients ADD COLUMN IF NOT EXISTS zone text NOT NULL
            DEFAULT 'Europe/London';
        CREATE TABLE IF NOT EXISTS routine_models (
            patient_id text NOT NULL REFERENCES patients(id),
            version integer NOT NULL,
            model text NOT NULL,
            trained_at timestamptz NOT NULL,
            window_from timestamptz NOT NULL,
            window_to timestamptz NOT NULL,
            days integer NOT NULL,
            events integer NOT NULL,
            false_alarms integer NOT NULL,
            params jsonb NOT NULL,
            arrays bytea NOT NULL,
            PRIMARY KEY (patient_id, version)
        );
        CREATE TABLE IF NOT EXISTS routine_detections (
            alarm_id text NOT NULL,
            start timestamptz NOT NULL,
            agency_id text NOT NULL,
            patient_id text NOT NULL REFERENCES patients(id),
            kind text NOT NULL,
            raised_at timestamptz NOT NULL,
            explanation text NOT NULL,
            model_version integer,
            incident_asked_at timestamptz,
            label text,
            labelled_by text,
            labelled_at timestamptz,
            PRIMARY KEY (alarm_id, start)
        );
        CREATE INDEX IF NOT EXISTS routine_detections_of_patient
            ON routine_detections (patient_id, raised_at);
        CREATE TABLE IF NOT EXISTS care_reviews (
            patient_id text NOT NULL REFERENCES patients(id),
            agency_id text NOT NULL,
            found_at timestamptz NOT NULL,
            window_to timestamptz NOT NULL,
            measure text NOT NULL,
            recent double precision NOT NULL,
            usual double precision NOT NULL,
            explanation text NOT NULL,
            PRIMARY KEY (patient_id, window_to, measure)
        );
        CREATE INDEX IF NOT EXISTS care_reviews_of_agency ON care_reviews (agency_id, found_at);
        """,
    ),
    (
        13,
        """
        CREATE OR REPLACE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;
        CREATE TABLE IF NOT EXISTS access_log (
            seq bigserial PRIMARY KEY,
            record_id text NOT NULL UNIQUE,
            agency_id text NOT NULL,
            role text NOT NULL,
            subject text NOT NULL,
            recipient text NOT NULL,
            patient_id text,
            via text NOT NULL,
            what text NOT NULL,
            at timestamptz NOT NULL
        );
        CREATE INDEX IF NOT EXISTS access_log_of_patient ON access_log (patient_id, at);
        CREATE INDEX IF NOT EXISTS access_log_of_agency ON access_log (agency_id, at);
        DROP TRIGGER IF EXISTS events_append_only ON events;
        CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
            FOR EACH ROW EXECUTE FUNCTION append_only();
        DROP TRIGGER IF EXISTS events_never_truncated ON events;
        CREATE TRIGGER events_never_truncated BEFORE TRUNCATE ON events
            FOR EACH STATEMENT EXECUTE FUNCTION append_only();
        DROP TRIGGER IF EXISTS access_log_append_only ON access_log;
        CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
            FOR EACH ROW EXECUTE FUNCTION append_only();
        DROP TRIGGER IF EXISTS access_log_never_truncated ON access_log;
        CREATE TRIGGER access_log_never_truncated BEFORE TRUNCATE ON access_log
            FOR EACH STATEMENT EXECUTE FUNCTION append_only();
        """,
    ),
    (
        14,
        """
        CREATE TABLE IF NOT EXISTS patient_keys (
            patient_id text PRIMARY KEY,
            wrapped bytea NOT NULL,
            kek_id text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE patients ADD COLUMN IF NOT EXISTS name_sealed bytea;
        ALTER TABLE patients ADD COLUMN IF NOT EXISTS forgotten_at timestamptz;
        ALTER TABLE patients ALTER COLUMN name DROP NOT NULL;
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'patients_name_sealed'
                           AND conrelid = 'patients'::regclass) THEN
                ALTER TABLE patients ADD CONSTRAINT patients_name_sealed
                    CHECK (name IS NULL) NOT VALID;
            END IF;
        END $$;
        CREATE INDEX IF NOT EXISTS fixes_age ON fixes USING brin (ts);
        """,
    ),
    (
        16,
        """
        CREATE INDEX IF NOT EXISTS incidents_of_agency ON incidents (agency_id, opened_at, id);
        CREATE INDEX IF NOT EXISTS alarms_of_agency ON alarms (agency_id, raised_at, id);
        CREATE INDEX IF NOT EXISTS events_of_alarm ON events ((payload->>'alarm_id'), seq)
            WHERE payload->>'alarm_id' IS NOT NULL;
        """,
    ),
    (
        17,
        """
        ALTER TABLE patients ADD COLUMN IF NOT EXISTS details_sealed bytea;
        """,
    ),
    (
        18,
        """
        ALTER TABLE devices ADD COLUMN IF NOT EXISTS decommissioned_at timestamptz;
        """,
    ),
    (
        19,
        """
        CREATE TABLE IF NOT EXISTS cancelled_visits (
            id text PRIMARY KEY,
            version integer NOT NULL,
            cancelled_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
]
