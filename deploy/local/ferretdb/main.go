// Command ferretdb runs FerretDB v1 embedded, on its SQLite backend, as liftstack's
// local MongoDB-wire server.
//
// Why a main of our own: `go install .../cmd/ferretdb@v1.24.2` builds a binary that
// panics at start because the module zip lacks build/version/version.txt (FerretDB
// issue 2982). The embeddable package `ferretdb` does not need that file.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data", "data", "directory for the SQLite database files")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "bad -log-level: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		logger.Error("bad data dir", "err", err)
		os.Exit(2)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		logger.Error("cannot create data dir", "err", err)
		os.Exit(2)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		// BEGIN IMMEDIATE: a write transaction takes SQLite's write lock up front, so
		// concurrent writers wait (busy_timeout) instead of failing with SQLITE_BUSY
		// when a deferred read transaction tries to upgrade to a write.
		SQLiteURL: "file:" + abs + "/?_txlock=immediate",
	})
	if err != nil {
		logger.Error("cannot start FerretDB", "err", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(os.Stderr, "ferretdb listening on %s, data in %s\n", *listen, abs)
	if err := f.Run(ctx); err != nil {
		logger.Error("FerretDB stopped", "err", err)
		os.Exit(1)
	}
}
