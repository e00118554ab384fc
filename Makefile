# The Kubernetes path, for a Linux machine with Docker, kind, kubectl and helm:
#   make images         build the four images from images/Dockerfile (BuildKit); IMAGE_FLAGS=--local-bases
#                       where no registry is reachable, IMAGE_FLAGS=--prebuilt to compile on the host
#   make kind-demo      build the images, create the kind cluster, load the images, install the
#                       chart and apply examples/capture.yaml; the UI is then on http://127.0.0.1:8080/
#   make kind-down      delete the cluster
# No cluster or Docker? `hack/local/trawl-local up` runs the whole pipeline on this machine.
CLUSTER ?= trawl
NAMESPACE ?= trawl-system
TAG ?= dev
REGISTRY ?= ghcr.io/trawl-dev
COMPONENTS := operator sniffer parser api
IMAGE_FLAGS ?=

.PHONY: images kind-up kind-load install demo kind-demo kind-down

images:
	bash images/build.sh --registry $(REGISTRY) --tag $(TAG) $(IMAGE_FLAGS)

kind-up:
	kind get clusters | grep -qx $(CLUSTER) || kind create cluster --name $(CLUSTER) --config kind-config.yaml

kind-load:
	for c in $(COMPONENTS); do kind load docker-image --name $(CLUSTER) $(REGISTRY)/trawl-$$c:$(TAG) || exit 1; done

install:
	kubectl create namespace $(NAMESPACE) --dry-run=client -o yaml | kubectl apply -f -
	kubectl label namespace $(NAMESPACE) pod-security.kubernetes.io/enforce=privileged --overwrite
	helm upgrade --install trawl charts/trawl -n $(NAMESPACE) --wait --timeout 10m \
	  --set image.registry=$(REGISTRY),image.tag=$(TAG),image.pullPolicy=Never \
	  --set api.service.type=NodePort
	kubectl patch svc -n $(NAMESPACE) trawl-api --type merge \
	  -p '{"spec":{"ports":[{"name":"http","port":8080,"targetPort":"http","nodePort":30080}]}}'

demo:
	kubectl apply -n $(NAMESPACE) -f examples/capture.yaml
	kubectl wait -n $(NAMESPACE) --for=condition=Ready cap/web-and-dns --timeout=5m
	@echo "Trawl is capturing: open http://127.0.0.1:8080/"

kind-demo: images kind-up kind-load install demo

kind-down:
	kind delete cluster --name $(CLUSTER)
