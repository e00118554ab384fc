import { NavLink, Route, Routes } from "react-router-dom";
import { ThemeToggle } from "./components/ThemeToggle";
import { TokenPrompt } from "./components/TokenPrompt";
import { WhoAmI } from "./components/WhoAmI";
import { Dashboard } from "./pages/Dashboard";
import { Events } from "./pages/Events";
import { Flows } from "./pages/Flows";
import { Packets } from "./pages/Packets";
import { ServiceMap } from "./pages/ServiceMap";
import { SessionDetail } from "./pages/SessionDetail";
import { Sessions } from "./pages/Sessions";
import { useFilters } from "./useFilters";
import { filtersToSearch } from "./filters";

export function App() {
  const [filters] = useFilters();
  // Moving between views keeps the session and the other filters.
  const carry = (path: string) => {
    const search = filtersToSearch(filters).toString();
    return search ? `${path}?${search}` : path;
  };
  return (
    <div className="app">
      <header className="topbar">
        <a className="brand" href="/" aria-label="Trawl home">
          Trawl
        </a>
        <nav aria-label="Main">
          <NavLink to={carry("/")} end>
            Dashboard
          </NavLink>
          <NavLink to="/sessions">Sessions</NavLink>
          <NavLink to={carry("/packets")}>Packets</NavLink>
          <NavLink to={carry("/flows")}>Flows</NavLink>
          <NavLink to={carry("/events")}>Events</NavLink>
          <NavLink to={carry("/service-map")}>Service map</NavLink>
        </nav>
        <WhoAmI />
        <ThemeToggle />
      </header>
      <main>
        <Routes>
          <Route path="/" element={<Dashboard />} />
          <Route path="/sessions" element={<Sessions />} />
          <Route path="/sessions/:namespace/:name" element={<SessionDetail />} />
          <Route path="/packets" element={<Packets />} />
          <Route path="/flows" element={<Flows />} />
          <Route path="/events" element={<Events />} />
          <Route path="/service-map" element={<ServiceMap />} />
          <Route path="*" element={<p className="state">No such page. Pick a view above.</p>} />
        </Routes>
      </main>
      <TokenPrompt />
    </div>
  );
}
