// A dissected packet's layers as a tree, like Wireshark's detail pane.

export interface TreeNode {
  label: string;
  value?: string;
  children: TreeNode[];
}

function node(label: string, value: unknown): TreeNode {
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== "object")) {
      return { label, value: value.length ? value.join(", ") : "(none)", children: [] };
    }
    return { label, children: value.map((v, i) => node(String(i), v)) };
  }
  if (value !== null && typeof value === "object") {
    return {
      label,
      children: Object.entries(value as Record<string, unknown>).map(([k, v]) => node(k, v)),
    };
  }
  return { label, value: value === null || value === undefined ? "" : String(value), children: [] };
}

/**
 * One node per layer (titled by its `layer` field, or by `protocol` for the application layer),
 * its fields as children.
 */
export function layerTree(layers: Record<string, unknown>[]): TreeNode[] {
  return layers.map((layer) => {
    const { layer: kind, ...rest } = layer;
    const application = kind === "application" && typeof rest.protocol === "string";
    const { protocol, ...withoutProtocol } = rest;
    const name = application ? protocol : kind;
    const fields = application ? withoutProtocol : rest;
    return {
      label: typeof name === "string" ? name.toUpperCase() : "layer",
      children: Object.entries(fields)
        .filter(([, v]) => v !== null && v !== undefined)
        .map(([k, v]) => node(k, v)),
    };
  });
}
