// cni-runtime drives a CNI network configuration list through libcni, the
// library containerd and CRI-O run plugin chains with, so that tests call
// the plugins exactly as a container runtime does (prevResult threading,
// cached results for CHECK and DEL, CNI_ARGS).
//
//	cni-runtime add|check|del CONFLIST BIN_DIR CACHE_DIR CONTAINER_ID NETNS IFNAME [K=V ...]
//
// ADD prints the chain's final result as JSON. Errors go to stderr as the
// plugin's error, with exit status 1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	if len(os.Args) < 8 {
		fmt.Fprintln(os.Stderr, "usage: cni-runtime add|check|del CONFLIST BIN_DIR CACHE_DIR CONTAINER_ID NETNS IFNAME [K=V ...]")
		os.Exit(2)
	}
	op, conflist, binDir, cacheDir := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	list, err := libcni.ConfListFromFile(conflist)
	if err != nil {
		fail(err)
	}
	rt := &libcni.RuntimeConf{
		ContainerID: os.Args[5],
		NetNS:       os.Args[6],
		IfName:      os.Args[7],
	}
	for _, kv := range os.Args[8:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			fail(fmt.Errorf("argument %q is not K=V", kv))
		}
		rt.Args = append(rt.Args, [2]string{k, v})
	}
	cni := libcni.NewCNIConfigWithCacheDir(strings.Split(binDir, ":"), cacheDir, nil)
	ctx := context.Background()
	switch op {
	case "add":
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		out, err := json.Marshal(res)
		if err != nil {
			fail(err)
		}
		fmt.Println(string(out))
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown operation %q", op))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
