"""The lab's Kubernetes API server: a small, real-enough kube-apiserver over HTTPS.

Owns everything behind ``python -m upgrader_lab.apiserver --dir DIR``: TLS material and the
kubeconfig (``certs``), the persisted object store (``store``), the REST semantics of the
resources upgrader and ``kubectl`` use (``api``), discovery/OpenAPI documents
(``discovery``), server-side tables (``tables``), the background controller
(``controller``) and the HTTP edge (``server``).

Must not: touch anything outside DIR, start other processes, or be imported by upgrader's
production code (only the lab runner starts it, as a separate process).
"""
