// Command kcp is a single-machine Kubernetes control plane for loadgate's
// integration tests: one multi-call binary holding an embedded etcd, the real
// kube-apiserver and the real kube-controller-manager from k8s.io/kubernetes
// at the release pinned in go.mod. One binary saves link time and disk.
//
//	kcp etcd --data-dir DIR --listen-client 127.0.0.1:PORT --listen-peer 127.0.0.1:PORT
//	kcp kube-apiserver [kube-apiserver flags]
//	kcp kube-controller-manager [kube-controller-manager flags]
//
// start.sh wires them together on loopback; nothing here listens elsewhere.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kcp etcd|kube-apiserver|kube-controller-manager [flags]")
		os.Exit(2)
	}
	command, args := os.Args[1], os.Args[2:]
	switch command {
	case "etcd":
		os.Exit(runEtcd(args))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	default:
		fmt.Fprintf(os.Stderr, "kcp: unknown command %q (etcd, kube-apiserver, kube-controller-manager)\n", command)
		os.Exit(2)
	}
}

// runEtcd serves a one-member etcd on loopback until SIGTERM or SIGINT.
func runEtcd(args []string) int {
	flags := flag.NewFlagSet("etcd", flag.ContinueOnError)
	dataDir := flags.String("data-dir", "", "directory for etcd's data (required)")
	client := flags.String("listen-client", "127.0.0.1:2379", "client address (loopback)")
	peer := flags.String("listen-peer", "127.0.0.1:2380", "peer address (loopback)")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "kcp etcd: --data-dir is required")
		return 2
	}
	clientURL, err := url.Parse("http://" + *client)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kcp etcd: --listen-client: %v\n", err)
		return 2
	}
	peerURL, err := url.Parse("http://" + *peer)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kcp etcd: --listen-peer: %v\n", err)
		return 2
	}

	cfg := embed.NewConfig()
	cfg.Name = "kcp"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// "warn" logs every request as slow on a shared CPU; errors are what a test needs.
	cfg.LogLevel = "error"
	// A test cluster's data is thrown away: skip fsync, it is the slowest part
	// of etcd on a shared disk.
	cfg.UnsafeNoFsync = true

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kcp etcd: %v\n", err)
		return 1
	}
	defer server.Close()
	select {
	case <-server.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "kcp etcd: not ready after 60 s")
		return 1
	}
	fmt.Fprintf(os.Stderr, "kcp etcd: serving on %s\n", clientURL)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-signals:
		return 0
	case err := <-server.Err():
		fmt.Fprintf(os.Stderr, "kcp etcd: %v\n", err)
		return 1
	}
}
