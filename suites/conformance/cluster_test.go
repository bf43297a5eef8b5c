package conformance

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestSchedulable(t *testing.T) {
	cp := corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}
	tests := []struct {
		name string
		node corev1.Node
		tols []corev1.Toleration
		want bool
	}{
		{"plain node", corev1.Node{}, nil, true},
		{"cordoned", corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}}, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, false},
		{"control plane, not tolerated", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{cp}}}, nil, false},
		{"control plane, tolerate everything", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{cp}}},
			[]corev1.Toleration{{Operator: corev1.TolerationOpExists}}, true},
		{"control plane, tolerated by key", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{cp}}},
			[]corev1.Toleration{{Key: cp.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, true},
		{"other effect tolerated only", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{cp}}},
			[]corev1.Toleration{{Key: cp.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, false},
		{"PreferNoSchedule ignored", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "x", Effect: corev1.TaintEffectPreferNoSchedule}}}}, nil, true},
		{"Equal value mismatch", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "x", Value: "a", Effect: corev1.TaintEffectNoExecute}}}},
			[]corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpEqual, Value: "b"}}, false},
		{"Equal value match", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "x", Value: "a", Effect: corev1.TaintEffectNoExecute}}}},
			[]corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpEqual, Value: "a"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := schedulable(tt.node, tt.tols); got != tt.want {
				t.Errorf("schedulable = %v, want %v", got, tt.want)
			}
		})
	}
}
