package kindlab

import (
	"fmt"
	"strconv"
	"strings"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

// CRISocket is where CRI-O listens inside the node image (lab/kindlab/nodeimage).
const CRISocket = "unix:///var/run/crio/crio.sock"

// kubeadmPatches turn kind's containerd defaults into CRI-O and skip CoreDNS: the lab has no
// DNS addon, so nothing in the cluster forwards a lookup to an outside resolver.
var kubeadmPatches = []string{
	`kind: InitConfiguration
nodeRegistration:
  criSocket: ` + CRISocket + `
skipPhases:
  - preflight
  - addon/coredns
`,
	`kind: JoinConfiguration
nodeRegistration:
  criSocket: ` + CRISocket + `
`,
	`kind: KubeletConfiguration
containerRuntimeEndpoint: ` + CRISocket + `
failCgroupV1: false
`,
}

// ClusterConfig is the kind cluster of the lab: one control plane and workers workers, the
// node image's CRI-O wired in through kubeadm patches, kind's default CNI (kindnet) disabled in
// favour of the node image's bridge network (keysync-cni.service).
func ClusterConfig(name, image string, workers int) (*v1alpha4.Cluster, error) {
	if workers < 0 {
		return nil, fmt.Errorf("invalid worker count %d: must be >= 0", workers)
	}
	if image == "" {
		return nil, fmt.Errorf("missing node image: build it with hack/build-node-image.sh")
	}
	cfg := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     name,
		Networking: v1alpha4.Networking{
			DisableDefaultCNI: true,
		},
		KubeadmConfigPatches: append([]string(nil), kubeadmPatches...),
	}
	// etcd's client port and the KMS plug-in's health port, on the host's loopback only, for
	// the suites (capabilities etcd and kms; kms.go).
	cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.ControlPlaneRole, Image: image,
		ExtraPortMappings: []v1alpha4.PortMapping{
			hostPort(2379, EtcdHostAddr),
			hostPort(kmsHealthPort, KMSHealthHostAddr),
		}})
	for range workers {
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: image})
	}
	v1alpha4.SetDefaultsCluster(cfg)
	return cfg, nil
}

// hostPort publishes a node's containerPort at addr (127.0.0.1:port) on the host.
func hostPort(containerPort int32, addr string) v1alpha4.PortMapping {
	host, port, _ := strings.Cut(addr, ":")
	p, _ := strconv.Atoi(port)
	return v1alpha4.PortMapping{ContainerPort: containerPort, HostPort: int32(p), ListenAddress: host, Protocol: v1alpha4.PortMappingProtocolTCP}
}
