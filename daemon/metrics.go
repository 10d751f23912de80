package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are what `listen:` serves: /metrics from a registry of its own
// (so that a test, or two daemons in one process, count apart), and
// /healthz. The daemon and the server share one (Options.Metrics).
type Metrics struct {
	lines, skipped *prometheus.CounterVec
	events         *prometheus.CounterVec
	detections     *prometheus.CounterVec
	actionFailures *prometheus.CounterVec
	actionsDropped *prometheus.CounterVec
	active         *prometheus.GaugeVec
	lag            *prometheus.GaugeVec
	commitSeconds  prometheus.Histogram
	commitFailures prometheus.Counter
	alone          prometheus.Gauge
	keys           prometheus.Gauge
	evicted        prometheus.Counter
	registry       *prometheus.Registry

	mu     sync.Mutex
	health error // what /healthz says: nil while the state is saved
}

// NewMetrics makes the metrics, registered in a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bombwatch_lines_read_total",
			Help: "Lines read, by input."}, []string{"input"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bombwatch_lines_skipped_total",
			Help: "Lines skipped as longer than 64 KiB, by input."}, []string{"input"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bombwatch_events_total",
			Help: "Events run through the rules, by kind."}, []string{"kind"}),
		detections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bombwatch_detections_total",
			Help: "Blocks started and lifted, by rule."}, []string{"rule", "event"}),
		actionFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bombwatch_action_failures_total",
			Help: "Actions that failed, by action."}, []string{"action"}),
		actionsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bombwatch_actions_dropped_total",
			Help: "Actions not run because too many were waiting (10,000), by action."}, []string{"action"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bombwatch_blocks_active",
			Help: "Blocks in force, by rule."}, []string{"rule"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bombwatch_input_lag_seconds",
			Help: "How long the events of an input waiting to be counted have been read; 0 when none waits."}, []string{"input"}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bombwatch_sqlite_commit_seconds",
			Help: "Time to hand a batch to SQLite (the transaction may run on after).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "bombwatch_state_commit_failures_total",
			Help: "Attempts to save the state that failed; reading pauses until one succeeds."}),
		alone: prometheus.NewGauge(prometheus.GaugeOpts{Name: "bombwatch_state_alone",
			Help: "1 while the shared state cannot be reached and this host goes on alone, on its own events."}),
		keys: prometheus.NewGauge(prometheus.GaugeOpts{Name: "bombwatch_keys",
			Help: "Keys the rules' windows hold, together (see max_keys); after a start, those restored so far."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{Name: "bombwatch_keys_evicted_total",
			Help: "Keys forgotten, least recently seen first, because the rules held more than max_keys."}),
		registry: prometheus.NewRegistry(),
	}
	m.registry.MustRegister(m.lines, m.skipped, m.events, m.detections,
		m.actionFailures, m.actionsDropped, m.active, m.lag, m.commitSeconds, m.commitFailures, m.alone, m.keys, m.evicted)
	return m
}

func (m *Metrics) setHealth(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.health = err
}

// Serve serves /metrics and /healthz on ln until ctx is done.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		m.mu.Lock()
		err := m.health
		m.mu.Unlock()
		if err != nil {
			http.Error(w, "state not saved: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
