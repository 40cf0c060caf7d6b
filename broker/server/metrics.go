package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"ward.dev/ward/internal/store"
)

// metrics are the Prometheus series of one server, on its own registry.
type metrics struct {
	registry   *prometheus.Registry
	issuedN    *prometheus.CounterVec
	issueTime  *prometheus.HistogramVec
	decisions  *prometheus.CounterVec
	leaseEnds  *prometheus.CounterVec
	leaseStart prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		issuedN: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_credentials_issued_total", Help: "Credentials issued, by kind.",
		}, []string{"kind"}),
		issueTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ward_issue_duration_seconds",
			Help:    "Time to issue one credential, from request decoded to lease written, by kind.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"kind"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_authz_decisions_total", Help: "Authorization decisions, by outcome.",
		}, []string{"decision"}),
		leaseEnds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_leases_ended_total", Help: "Leases ended, by final state.",
		}, []string{"state"}),
		leaseStart: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ward_leases_created_total", Help: "Leases created.",
		}),
	}
	m.registry.MustRegister(m.issuedN, m.issueTime, m.decisions, m.leaseEnds, m.leaseStart,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// register adds the lease-state gauge, read from the store at each scrape.
func (m *metrics) register(s *store.Store) {
	m.registry.MustRegister(&leaseCollector{store: s, desc: prometheus.NewDesc(
		"ward_leases", "Leases in the store, by state.", []string{"state"}, nil)})
}

func (m *metrics) issued(kind string, d time.Duration) {
	m.issuedN.WithLabelValues(kind).Inc()
	m.issueTime.WithLabelValues(kind).Observe(d.Seconds())
}

func (m *metrics) decision(allowed bool) {
	if allowed {
		m.decisions.WithLabelValues("allow").Inc()
	} else {
		m.decisions.WithLabelValues("deny").Inc()
	}
}

func (m *metrics) leaseCreated()           { m.leaseStart.Inc() }
func (m *metrics) leaseEnded(state string) { m.leaseEnds.WithLabelValues(state).Inc() }

type leaseCollector struct {
	store *store.Store
	desc  *prometheus.Desc
}

func (c *leaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *leaseCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.store.CountLeases(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), state)
	}
}
