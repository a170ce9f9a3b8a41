-- task 628595e1-31cc-4e24-89f4-e339734c39a8 RUNNING
-- task 910475cb-7965-4d1c-8580-695419fd54fc COMPLETE
-- task cf9a1be4-778f-47f0-b56e-2d6ac6975ac6 RETRY
-- task 8a0c8ada-f47d-43b3-adeb-0a3b198769bd FAILED
-- task 3682bb60-dc7f-42fa-887f-9632abdf0980 TIMEOUT
-- task 06f772ec-179a-4384-ac14-ae12729ba886 EXPIRED
-- task f15a04f4-5f1d-46e5-9340-1f0a69a0f0e4 PENDING
-- task b10433a2-ef1d-49f2-80c3-a72e8218403f CANCELLED
--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: callbacks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.callbacks (
    id text NOT NULL,
    task_id text NOT NULL,
    workspace_id text NOT NULL,
    url text NOT NULL,
    status text NOT NULL,
    body bytea NOT NULL,
    state text DEFAULT 'PENDING'::text NOT NULL,
    attempts bigint DEFAULT 0 NOT NULL,
    created_at bigint NOT NULL,
    next_attempt_at bigint NOT NULL,
    leased_until bigint,
    delivered_at bigint,
    last_error text,
    CONSTRAINT callbacks_state_check CHECK ((state = ANY (ARRAY['PENDING'::text, 'DELIVERED'::text, 'FAILED'::text])))
);


--
-- Name: containers; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.containers (
    id text NOT NULL,
    stub_id text NOT NULL,
    agent_id text NOT NULL,
    started_at bigint NOT NULL,
    heartbeat_at bigint NOT NULL
);


--
-- Name: idempotency_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.idempotency_keys (
    workspace_id text NOT NULL,
    key text NOT NULL,
    task_id text NOT NULL,
    created_at bigint NOT NULL
);


--
-- Name: objects; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.objects (
    id bigint NOT NULL,
    workspace_id text NOT NULL,
    sha256 text NOT NULL,
    data bytea NOT NULL,
    created_at bigint NOT NULL
);


--
-- Name: objects_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.objects ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.objects_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: outputs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.outputs (
    id text NOT NULL,
    task_id text NOT NULL,
    name text NOT NULL,
    size bigint NOT NULL,
    data bytea NOT NULL,
    created_at bigint NOT NULL
);


--
-- Name: schema_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_version (
    version bigint NOT NULL,
    name text NOT NULL,
    applied_at bigint NOT NULL
);


--
-- Name: stubs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.stubs (
    id text NOT NULL,
    workspace_id text NOT NULL,
    name text NOT NULL,
    type text NOT NULL,
    version bigint NOT NULL,
    config text NOT NULL,
    config_version bigint NOT NULL,
    object_id bigint NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    CONSTRAINT stubs_type_check CHECK ((type = ANY (ARRAY['taskqueue/deployment'::text, 'taskqueue/serve'::text]))),
    CONSTRAINT stubs_version_check CHECK ((version >= 1))
);


--
-- Name: tasks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.tasks (
    seq bigint NOT NULL,
    id text NOT NULL,
    workspace_id text NOT NULL,
    stub_id text NOT NULL,
    status text NOT NULL,
    payload text NOT NULL,
    callback_url text,
    attempt bigint DEFAULT 0 NOT NULL,
    fence bigint DEFAULT 0 NOT NULL,
    max_retries bigint NOT NULL,
    timeout_s double precision NOT NULL,
    ttl_s double precision NOT NULL,
    retry_backoff_s double precision NOT NULL,
    container_id text DEFAULT ''::text NOT NULL,
    created_at bigint NOT NULL,
    started_at bigint,
    ended_at bigint,
    updated_at bigint NOT NULL,
    runnable_at bigint NOT NULL,
    expires_at bigint,
    lease_expires_at bigint,
    result text,
    error text,
    CONSTRAINT tasks_check CHECK (((status = ANY (ARRAY['COMPLETE'::text, 'CANCELLED'::text, 'TIMEOUT'::text, 'EXPIRED'::text, 'FAILED'::text])) = (ended_at IS NOT NULL))),
    CONSTRAINT tasks_check1 CHECK (((status <> 'RUNNING'::text) OR (lease_expires_at IS NOT NULL))),
    CONSTRAINT tasks_status_check CHECK ((status = ANY (ARRAY['PENDING'::text, 'RUNNING'::text, 'COMPLETE'::text, 'RETRY'::text, 'CANCELLED'::text, 'TIMEOUT'::text, 'EXPIRED'::text, 'FAILED'::text])))
);


--
-- Name: tasks_seq_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.tasks ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.tasks_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.tokens (
    hash text NOT NULL,
    workspace_id text NOT NULL,
    created_at bigint NOT NULL
);


--
-- Name: workspaces; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.workspaces (
    id text NOT NULL,
    name text NOT NULL,
    signing_secret text NOT NULL,
    created_at bigint NOT NULL
);


--
-- Data for Name: callbacks; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.callbacks VALUES ('87051d3b-e937-4f4a-9ad0-f35874556f0e', '910475cb-7965-4d1c-8580-695419fd54fc', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'http://receiver.test/hook', 'COMPLETE', '\x7b2264617461223a7b226f6b223a20317d7d', 'PENDING', 0, 1760000003000000, 1760000003000000, NULL, NULL, NULL);
INSERT INTO public.callbacks VALUES ('ccfd47bb-1819-4d6e-b542-39c1a405fa8f', '8a0c8ada-f47d-43b3-adeb-0a3b198769bd', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'http://receiver.test/hook', 'FAILED', '\x7b2264617461223a7b7d7d', 'PENDING', 0, 1760000003000000, 1760000003000000, NULL, NULL, NULL);
INSERT INTO public.callbacks VALUES ('92d99766-0128-4207-aa82-86135892a336', '3682bb60-dc7f-42fa-887f-9632abdf0980', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'http://receiver.test/hook', 'TIMEOUT', '\x7b2264617461223a7b7d7d', 'PENDING', 0, 1760000003000000, 1760000003000000, NULL, NULL, NULL);
INSERT INTO public.callbacks VALUES ('724f3132-4c02-4875-bda2-08c3afe0f706', '06f772ec-179a-4384-ac14-ae12729ba886', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'http://receiver.test/hook', 'EXPIRED', '\x7b2264617461223a7b7d7d', 'PENDING', 0, 1760000061000000, 1760000061000000, NULL, NULL, NULL);


--
-- Data for Name: containers; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: idempotency_keys; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: objects; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.objects OVERRIDING SYSTEM VALUE VALUES (1, '805f5512-50f6-4d25-9861-e1757c43aa4e', '8739c76e681f900923b900c9df0ef75cf421d39cabb54650c4b9ad19b6a76d85', '\x504b0506000000000000000000000000000000000000', 1795978555016582);


--
-- Data for Name: outputs; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.outputs VALUES ('0d97deac-aaa3-47dd-9558-e74eeb010db5', '910475cb-7965-4d1c-8580-695419fd54fc', 'out.txt', 4, '\x6b657074', 1760000003000000);


--
-- Data for Name: schema_version; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.schema_version VALUES (1, 'initial', 1795978554996306);


--
-- Data for Name: stubs; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.stubs VALUES ('f1bf53ac-00a5-4900-93ee-48ca76e26818', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'old', 'taskqueue/deployment', 1, '{"authorized":true,"autoscaler":{"max_containers":1,"min_containers":0,"tasks_per_container":1},"callback_url":null,"code_path":null,"cpu":1.0,"env":{},"handler":"app.py:handler","keep_warm_seconds":10,"max_pending_tasks":100,"max_retries":3,"memory":128,"name":"old","retry_backoff":0,"retry_for":[],"timeout":3600,"ttl":60,"workers":1}', 1, 1, 1795978555016582, 1795978555016582);


--
-- Data for Name: tasks; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.tasks OVERRIDING SYSTEM VALUE VALUES (1, '628595e1-31cc-4e24-89f4-e339734c39a8', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'f1bf53ac-00a5-4900-93ee-48ca76e26818', 'RUNNING', '{"args":[1],"kwargs":{"k":"v"}}', 'http://receiver.test/hook', 1, 1, 3, 3600, 60, 0, 'taskqueue-old-00000001', 1760000000000000, 1760000001000000, NULL, 1760000001000000, 1760000000000000, NULL, 1761000001000000, NULL, NULL);
INSERT INTO public.tasks OVERRIDING SYSTEM VALUE VALUES (2, '910475cb-7965-4d1c-8580-695419fd54fc', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'f1bf53ac-00a5-4900-93ee-48ca76e26818', 'COMPLETE', '{"args":[1],"kwargs":{"k":"v"}}', 'http://receiver.test/hook', 1, 1, 3, 3600, 60, 0, 'taskqueue-old-00000001', 1760000000000000, 1760000001000000, 1760000003000000, 1760000003000000, 1760000000000000, NULL, NULL, '{"ok": 1}', NULL);
INSERT INTO public.tasks OVERRIDING SYSTEM VALUE VALUES (3, 'cf9a1be4-778f-47f0-b56e-2d6ac6975ac6', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'f1bf53ac-00a5-4900-93ee-48ca76e26818', 'RETRY', '{"args":[1],"kwargs":{"k":"v"}}', 'http://receiver.test/hook', 1, 1, 3, 3600, 60, 0, 'taskqueue-old-00000001', 1760000000000000, 1760000001000000, NULL, 1760000003000000, 1760000003000000, 1760000063000000, NULL, NULL, '{"type": "OSError", "message": "again"}');
INSERT INTO public.tasks OVERRIDING SYSTEM VALUE VALUES (4, '8a0c8ada-f47d-43b3-adeb-0a3b198769bd', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'f1bf53ac-00a5-4900-93ee-48ca76e26818', 'FAILED', '{"args":[1],"kwargs":{"k":"v"}}', 'http://receiver.test/hook', 1, 1, 3, 3600, 60, 0, 'taskqueue-old-00000001', 1760000000000000, 1760000001000000, 1760000003000000, 1760000003000000, 1760000000000000, NULL, NULL, NULL, '{"type": "ValueError", "message": "bad"}');
INSERT INTO public.tasks OVERRIDING SYSTEM VALUE VALUES (5, '3682bb60-dc7f-42fa-887f-9632abdf0980', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'f1bf53ac-00a5-4900-93ee-48ca76e26818', 'TIMEOUT', '{"args":[1],"kwargs":{"k":"v"}}', 'http://receiver.test/hook', 1, 1, 3, 3600, 60, 0, 'taskqueue-old-00000001', 1760000000000000, 1760000001000000, 1760000003000000, 1760000003000000, 1760000000000000, NULL, NULL, NULL, '{"type": "TimeoutError", "message": "slow"}');
INSERT INTO public.tasks OVERRIDING SYSTEM VALUE VALUES (6, '06f772ec-179a-4384-ac14-ae12729ba886', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'f1bf53ac-00a5-4900-93ee-48ca76e26818', 'EXPIRED', '{"args":[1],"kwargs":{"k":"v"}}', 'http://receiver.test/hook', 0, 0, 3, 3600, 60, 0, '', 1760000000000000, NULL, 1760000061000000, 1760000061000000, 1760000000000000, NULL, NULL, NULL, NULL);
INSERT INTO public.tasks OVERRIDING SYSTEM VALUE VALUES (7, 'f15a04f4-5f1d-46e5-9340-1f0a69a0f0e4', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'f1bf53ac-00a5-4900-93ee-48ca76e26818', 'PENDING', '{"args":[1],"kwargs":{"k":"v"}}', NULL, 0, 0, 3, 3600, 60, 0, '', 1760000000000000, NULL, NULL, 1760000000000000, 1760000000000000, 1760000060000000, NULL, NULL, NULL);
INSERT INTO public.tasks OVERRIDING SYSTEM VALUE VALUES (8, 'b10433a2-ef1d-49f2-80c3-a72e8218403f', '805f5512-50f6-4d25-9861-e1757c43aa4e', 'f1bf53ac-00a5-4900-93ee-48ca76e26818', 'CANCELLED', '{"args":[1],"kwargs":{"k":"v"}}', NULL, 0, 0, 3, 3600, 60, 0, '', 1760000000000000, NULL, 1760000002000000, 1760000002000000, 1760000000000000, NULL, NULL, NULL, NULL);


--
-- Data for Name: tokens; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.tokens VALUES ('b5ed66b9ea26d607947453c8e3c3b282d851d702a090ec0b20004a23568e4ea6', '805f5512-50f6-4d25-9861-e1757c43aa4e', 1795978555014853);


--
-- Data for Name: workspaces; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.workspaces VALUES ('805f5512-50f6-4d25-9861-e1757c43aa4e', 'upgrade', 'eef10dbec4322e32d97ec2b8aac44a435d29f09ba716149dcc001ee2d0a222f7', 1795978555009035);


--
-- Name: objects_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.objects_id_seq', 1, true);


--
-- Name: tasks_seq_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.tasks_seq_seq', 8, true);


--
-- Name: callbacks callbacks_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.callbacks
    ADD CONSTRAINT callbacks_pkey PRIMARY KEY (id);


--
-- Name: containers containers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.containers
    ADD CONSTRAINT containers_pkey PRIMARY KEY (id);


--
-- Name: idempotency_keys idempotency_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (workspace_id, key);


--
-- Name: objects objects_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.objects
    ADD CONSTRAINT objects_pkey PRIMARY KEY (id);


--
-- Name: objects objects_workspace_id_sha256_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.objects
    ADD CONSTRAINT objects_workspace_id_sha256_key UNIQUE (workspace_id, sha256);


--
-- Name: outputs outputs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outputs
    ADD CONSTRAINT outputs_pkey PRIMARY KEY (id);


--
-- Name: schema_version schema_version_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_version
    ADD CONSTRAINT schema_version_pkey PRIMARY KEY (version);


--
-- Name: stubs stubs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.stubs
    ADD CONSTRAINT stubs_pkey PRIMARY KEY (id);


--
-- Name: stubs stubs_workspace_id_name_version_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.stubs
    ADD CONSTRAINT stubs_workspace_id_name_version_key UNIQUE (workspace_id, name, version);


--
-- Name: tasks tasks_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT tasks_id_key UNIQUE (id);


--
-- Name: tasks tasks_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT tasks_pkey PRIMARY KEY (seq);


--
-- Name: tokens tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tokens
    ADD CONSTRAINT tokens_pkey PRIMARY KEY (hash);


--
-- Name: workspaces workspaces_name_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workspaces
    ADD CONSTRAINT workspaces_name_key UNIQUE (name);


--
-- Name: workspaces workspaces_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workspaces
    ADD CONSTRAINT workspaces_pkey PRIMARY KEY (id);


--
-- Name: callbacks_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX callbacks_due ON public.callbacks USING btree (next_attempt_at) WHERE (state = 'PENDING'::text);


--
-- Name: containers_stub; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX containers_stub ON public.containers USING btree (stub_id, heartbeat_at);


--
-- Name: outputs_task; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX outputs_task ON public.outputs USING btree (task_id);


--
-- Name: tasks_expiry; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX tasks_expiry ON public.tasks USING btree (expires_at) WHERE (expires_at IS NOT NULL);


--
-- Name: tasks_lease; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX tasks_lease ON public.tasks USING btree (lease_expires_at) WHERE (status = 'RUNNING'::text);


--
-- Name: tasks_stub_status; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX tasks_stub_status ON public.tasks USING btree (stub_id, status);


--
-- Name: tasks_waiting; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX tasks_waiting ON public.tasks USING btree (stub_id, seq) WHERE (status = ANY (ARRAY['PENDING'::text, 'RETRY'::text]));


--
-- Name: tasks_workspace; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX tasks_workspace ON public.tasks USING btree (workspace_id, seq);


--
-- Name: stubs stubs_object_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.stubs
    ADD CONSTRAINT stubs_object_id_fkey FOREIGN KEY (object_id) REFERENCES public.objects(id);


--
-- Name: stubs stubs_workspace_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.stubs
    ADD CONSTRAINT stubs_workspace_id_fkey FOREIGN KEY (workspace_id) REFERENCES public.workspaces(id);


--
-- Name: tokens tokens_workspace_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tokens
    ADD CONSTRAINT tokens_workspace_id_fkey FOREIGN KEY (workspace_id) REFERENCES public.workspaces(id);


--
-- PostgreSQL database dump complete
--


