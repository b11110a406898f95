//! Terminal events to actions.

use crate::app::{Action, App};
use crate::ui::{Hits, grid_hit, layer_hit, map_hit};
use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};

/// The action of a terminal event, if any; `hits` says what is where.
pub fn action(app: &App, hits: &Hits, event: &Event) -> Option<Action> {
    match event {
        Event::Key(k) if k.kind != KeyEventKind::Release => key(app, k),
        Event::Mouse(m) if app.help || app.prompt.is_some() => {
            // Overlays take clicks away from the panels beneath.
            (m.kind == MouseEventKind::Down(MouseButton::Left) && app.help)
                .then_some(Action::ToggleHelp)
        }
        Event::Mouse(m) => {
            let (col, row) = (m.column, m.row);
            let on_list = || {
                let r = hits.areas.layers;
                col >= r.x && row >= r.y && col < r.x + r.width && row < r.y + r.height
            };
            match m.kind {
                MouseEventKind::Down(MouseButton::Left) => map_hit(app, hits.map, col, row)
                    .map(|(y, x)| Action::SelectLocation(y, x))
                    .or_else(|| grid_hit(app, hits.grid, col, row).map(Action::SelectFeature))
                    .or_else(|| {
                        layer_hit(app, hits.areas.layers, col, row).map(Action::SelectLayer)
                    }),
                MouseEventKind::ScrollDown if on_list() => Some(Action::LayerDown),
                MouseEventKind::ScrollUp if on_list() => Some(Action::LayerUp),
                MouseEventKind::ScrollDown if grid_hit(app, hits.grid, col, row).is_some() => {
                    Some(Action::FeatureNext)
                }
                MouseEventKind::ScrollUp if grid_hit(app, hits.grid, col, row).is_some() => {
                    Some(Action::FeaturePrev)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn key(app: &App, k: &KeyEvent) -> Option<Action> {
    if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if app.prompt.is_some() {
        return match k.code {
            KeyCode::Char(c) => Some(Action::PromptChar(c)),
            KeyCode::Backspace => Some(Action::PromptBackspace),
            KeyCode::Tab => Some(Action::PromptComplete),
            KeyCode::Enter => Some(Action::PromptSubmit),
            KeyCode::Esc => Some(Action::PromptCancel),
            _ => None,
        };
    }
    if app.filtering {
        return match k.code {
            KeyCode::Char(c) => Some(Action::FilterChar(c)),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Esc => Some(Action::FilterClear),
            _ => None,
        };
    }
    Some(match k.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('/') => Action::FilterLayers,
        KeyCode::Esc if !app.layer_filter.is_empty() && !app.help => Action::FilterClear,
        KeyCode::Char('j') => Action::LayerDown,
        KeyCode::Char('k') => Action::LayerUp,
        KeyCode::Char('l') => Action::FeatureNext,
        KeyCode::Char('h') => Action::FeaturePrev,
        KeyCode::Up => Action::Move(-1, 0),
        KeyCode::Down => Action::Move(1, 0),
        KeyCode::Left => Action::Move(0, -1),
        KeyCode::Right => Action::Move(0, 1),
        KeyCode::Char('t') => Action::JumpStrongest,
        KeyCode::Tab => Action::FocusNext,
        KeyCode::Char('m') => Action::Maximize,
        KeyCode::Char('c') => Action::MaximizeClass,
        KeyCode::Char('x') => Action::Cancel,
        KeyCode::Char('o') => Action::OpenPrompt,
        KeyCode::Char('r') => Action::Reseed,
        KeyCode::Char('s') => Action::Save,
        KeyCode::Char('g') => Action::CycleGraphics,
        KeyCode::Char('p') => Action::TogglePatches,
        KeyCode::Char('b') => Action::TogglePin,
        KeyCode::Char('a') => Action::ToggleAttribution,
        KeyCode::Char('A') => Action::NextClass,
        KeyCode::Char(c @ '1'..='9') if app.show_patches => {
            Action::OpenPatch(c as usize - '1' as usize)
        }
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char('z') => Action::ToggleZoom,
        KeyCode::Esc if app.help => Action::ToggleHelp,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::loaded;

    #[test]
    fn clicks_pick_layers_tiles_and_locations_where_they_are_drawn() {
        use ratatui::layout::Rect;
        let (app, _) = loaded();
        // The 4x4 map drawn on 8x4 cells at (10, 5).
        let map = Some(Rect::new(10, 5, 8, 4));
        assert_eq!(map_hit(&app, map, 10, 5), Some((0, 0)));
        assert_eq!(map_hit(&app, map, 17, 8), Some((3, 3)));
        assert_eq!(map_hit(&app, map, 18, 8), None);
        // Six features: a 3x2 grid of tiles on 9x4 cells.
        let grid = Some(Rect::new(0, 0, 9, 4));
        assert_eq!(grid_hit(&app, grid, 0, 0), Some(0));
        assert_eq!(grid_hit(&app, grid, 8, 0), Some(2));
        assert_eq!(grid_hit(&app, grid, 4, 3), Some(4));
        // The list's rows start inside its frame.
        let list = Rect::new(0, 0, 30, 6);
        assert_eq!(layer_hit(&app, list, 3, 1), Some(0));
        assert_eq!(layer_hit(&app, list, 3, 2), Some(1));
        assert_eq!(layer_hit(&app, list, 3, 3), None);
        let hits = Hits {
            map,
            grid,
            ..Hits::default()
        };
        let click = |col, row| {
            crossterm::event::Event::Mouse(crossterm::event::MouseEvent {
                kind: crossterm::event::MouseEventKind::Down(crossterm::event::MouseButton::Left),
                column: col,
                row,
                modifiers: crossterm::event::KeyModifiers::NONE,
            })
        };
        assert_eq!(
            action(&app, &hits, &click(17, 8)),
            Some(Action::SelectLocation(3, 3))
        );
        assert_eq!(
            action(&app, &hits, &click(4, 3)),
            Some(Action::SelectFeature(4))
        );
    }
}
