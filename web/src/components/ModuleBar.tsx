import { ageSince } from '../format';
import type { State } from '../state';
import { useNow } from '../stream';
import type { ModuleLeadership } from '../types';

/** One header per module: its leader, the lease's age, its replicas. */
export function ModuleBar({ state }: { state: State }) {
  const now = useNow(1000);
  const names = [...new Set([...Object.keys(state.modules), ...Object.keys(state.leadership.modules)])].sort();
  return (
    <div className="modules">
      {names.map((name) => (
        <ModuleHeader key={name} name={name} lease={state.leadership.modules[name]} fallbackLeader={state.modules[name]?.status?.leader} version={state.modules[name]?.status?.version} now={now} />
      ))}
    </div>
  );
}

interface HeaderProps {
  name: string;
  lease?: ModuleLeadership;
  fallbackLeader?: string;
  version?: string;
  now: number;
}

function ModuleHeader({ name, lease, fallbackLeader, version, now }: HeaderProps) {
  const holder = lease ? lease.leader : fallbackLeader ?? '';
  const expired = !!lease?.expired;
  const leader = holder && !expired ? holder : '';
  const age = leader ? ageSince(lease?.acquiredAt, now) : null;
  const renewed = lease?.renewedAt ? ageSince(lease.renewedAt, now) : null;
  const state = leader ? 'led' : expired ? 'expired' : 'leaderless';
  return (
    <div className={`module-header ${state}`} data-testid={`module-${name}`} data-state={state}>
      <div className="module-title">
        <strong>{name}</strong>
        {version && <span className="muted small"> {version}</span>}
      </div>
      <div className="module-lease">
        <span className="muted">leader </span>
        <span className="leader" data-testid={`leader-${name}`}>
          {leader || 'none'}
        </span>
        {leader && age && (
          <span className="lease-age" title={renewed ? `renewed ${renewed} ago` : undefined}>
            {' '}
            · {age}
          </span>
        )}
        {expired && (
          <span className="badge bad-badge" title={holder ? `last held by ${holder}` : undefined}>
            lease expired{holder ? ` (${holder})` : ''}
          </span>
        )}
        {!leader && !expired && <span className="badge bad-badge">no leader</span>}
      </div>
      {lease && lease.replicas.length > 0 && (
        <div className="replicas">
          {lease.replicas.map((r) => (
            <span
              key={r.identity}
              className={`replica${r.alive ? ' alive' : ' gone'}${r.leader ? ' leader' : ''}`}
              data-testid={`replica-${name}-${r.identity}`}
              data-alive={String(!!r.alive)}
              data-leader={String(!!r.leader)}
              title={[r.addr && `grpc ${r.addr}`, r.metricsAddr && `metrics ${r.metricsAddr}`].filter(Boolean).join(' · ')}
            >
              {r.leader ? '★ ' : ''}
              {r.identity}
              <span className="replica-state">{r.alive ? '' : ' (gone)'}</span>
            </span>
          ))}
        </div>
      )}
    </div>
  );
}
