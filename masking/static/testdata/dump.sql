--
-- PostgreSQL database dump
--

SET standard_conforming_strings = on;

CREATE TABLE public.customer (
    customer_id integer NOT NULL,
    first_name character varying(40) NOT NULL,
    email character varying(60) NOT NULL,
    phone character varying(24),
    code character varying(20)
);

CREATE TABLE public.invoice (
    invoice_id integer NOT NULL,
    customer_code character varying(20),
    total numeric(10, 2) NOT NULL
);

COPY public.customer (customer_id, first_name, email, phone, code) FROM stdin;
1	Luís	luisg@embraer.com.br	+55 (12) 3923-5555	AB12CD34
2	Leonie	leonekohler@surfeu.de	\N	EF56GH78
3	Tab\there	back\\slash@example.org	+1 (555) 010-0100	IJ90KL12
\.

INSERT INTO public.invoice (invoice_id, customer_code, total) VALUES
    (1, 'AB12CD34', 1.98),
    (2, 'EF56GH78', 3.96);
INSERT INTO public.invoice VALUES (3, 'IJ90KL12', 5.94);

ALTER TABLE ONLY public.customer
    ADD CONSTRAINT customer_pkey PRIMARY KEY (customer_id);

ALTER TABLE ONLY public.customer
    ADD CONSTRAINT customer_code_key UNIQUE (code);

ALTER TABLE ONLY public.invoice
    ADD CONSTRAINT invoice_customer_code_fkey FOREIGN KEY (customer_code) REFERENCES public.customer(code);
