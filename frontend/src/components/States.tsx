import { ApiError } from "../api";

export function Loading({ what }: { what: string }) {
  return (
    <p className="state" role="status" aria-live="polite">
      Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: React.ReactNode }) {
  return (
    <div className="state empty" role="status">
      {children}
    </div>
  );
}

/** What went wrong, and what to do about it. */
export function ErrorState({ error }: { error: unknown }) {
  let advice = "Check that trawl-api is running and reachable, then reload.";
  let message = error instanceof Error ? error.message : String(error);
  if (error instanceof ApiError) {
    if (error.status === 400) advice = `Fix the ${error.parameter ?? "filter"} field and apply again.`;
    else if (error.status === 401) advice = "Enter a token when asked.";
    else if (error.status === 403) advice = "Your token lacks the scope this needs; ask for one that has it.";
    else if (error.status === 404) advice = "Pick another session: this one is not known to the API.";
    else if (error.status === 503) advice = "The database is unavailable; this view retries on its own.";
    message = error.message;
  }
  return (
    <div className="state error" role="alert">
      <strong>{message}</strong>
      <p>{advice}</p>
    </div>
  );
}
