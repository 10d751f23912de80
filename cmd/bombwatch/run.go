package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/daemon"
	"github.com/bombwatch/bombwatch/pipeline"
)

func runRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr, "[-c FILE] [--json] [--log-clock] [--cleanup]")
	cleanup := fs.Bool("cleanup", false, "remove bombwatch's firewall table and map entries, and exit")
	cfgPath := fs.String("c", "", "config `file` (default: the built-in config)")
	asJSON := fs.Bool("json", false, "also print detections as JSON lines on stdout")
	logClock := fs.Bool("log-clock", false, "lift blocks by the logs' own clock only, as replay does, not also by the wall clock")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	load := daemon.LoadFile(*cfgPath)
	cfg, err := load()
	if err != nil {
		return usageError{err}
	}
	logger := daemon.NewLogger(cfg, os.Stderr)
	limitMemory(cfg)
	for _, w := range config.Warnings(cfg) {
		logger.Warn(w, "config", cfg.File)
	}
	if *cleanup {
		return daemon.Cleanup(context.Background(), cfg, logger)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	reload := make(chan struct{}, 1)
	go func() {
		for s := range signals {
			if s == syscall.SIGHUP {
				select {
				case reload <- struct{}{}:
				default:
				}
				continue
			}
			cancel()
		}
	}()
	metrics := daemon.NewMetrics()
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		go func() {
			if err := metrics.Serve(ctx, ln, logger); err != nil {
				logger.Error("metrics", "addr", cfg.Listen, "err", err)
			}
		}()
	}
	var mu sync.Mutex
	opts := daemon.Options{Load: load, Logger: logger, Reload: reload, Now: time.Now, Metrics: metrics}
	if *logClock {
		opts.Now = nil
	}
	if *asJSON {
		opts.OnDetection = func(d pipeline.Detection) {
			b, _ := json.Marshal(d)
			mu.Lock()
			stdout.Write(append(b, '\n'))
			mu.Unlock()
		}
	}
	return daemon.Run(ctx, opts)
}
