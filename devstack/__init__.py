"""The embedded local stack: a real kube-apiserver + etcd and a moto server, on loopback."""
