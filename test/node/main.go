// Command knode is a real Kubernetes node for loadgate's end-to-end tests: one multi-call binary
// holding the real kubelet, kube-proxy and kube-scheduler from k8s.io/kubernetes at the release
// pinned in go.mod (the one test/cluster's kcp is built from), and a CoreDNS with only the
// plugins cluster DNS needs. test/node/node.sh runs them beside kcp's control plane, with
// Debian's containerd and runc as the container runtime.
//
//	knode kubelet [kubelet flags]
//	knode kube-proxy [kube-proxy flags]
//	knode kube-scheduler [kube-scheduler flags]
//	knode coredns -conf Corefile [coredns flags]
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	"k8s.io/component-base/cli"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// The plugins this CoreDNS knows, in the order it chains them: answers for the cluster's
// Services and pods, nothing forwarded (the tests reach no other name, so no loop can form).
func init() {
	dnsserver.Directives = []string{"errors", "kubernetes"}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: knode kubelet|kube-proxy|kube-scheduler|coredns [flags]")
		os.Exit(2)
	}
	command, args := os.Args[1], os.Args[2:]
	switch command {
	case "kubelet":
		cmd := kubelet.NewKubeletCommand(context.Background())
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-proxy":
		cmd := proxy.NewProxyCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-scheduler":
		cmd := scheduler.NewSchedulerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "coredns":
		// coremain parses os.Args itself.
		os.Args = append([]string{"coredns"}, args...)
		coremain.Run()
	default:
		fmt.Fprintf(os.Stderr, "knode: unknown command %q (kubelet, kube-proxy, kube-scheduler, coredns)\n", command)
		os.Exit(2)
	}
}
